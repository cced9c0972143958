/* Two checks of a restore's data, as loops in C: each stands in for a Python loop or a
 * packing that does more work than the answer needs, and each answers as that does.
 *
 * records_fit: the in-place check of a collection of records.
 * statemigrate/_model/_inplace.py defines what the check accepts: a record is a dict
 * held by its parent alone, holding exactly its fields in declaration order under
 * plain str keys, each value of exactly its declared type. That module checks any
 * schema it knows with loops in Python; this one runs the same loop for the common
 * case, a dict or list of records whose fields are scalars or lists of scalars, at
 * about a tenth of the cost (statemigrate/_model/_accel.py decides when it
 * applies). The Python loop stays the definition: the tests compare the two.
 *
 * With plain set, records_fit also requires what packs_plain requires of each value,
 * so that one walk answers both questions.
 *
 * packs_plain: whether ormsgpack would pack a value under the options of
 * statemigrate._model._plaindata.strictly_plain, without writing the bytes. It may
 * answer False where ormsgpack would pack (the caller then asks ormsgpack), never
 * True where it would not: it takes exact dicts with str keys, lists, str without a
 * lone surrogate, int of 64 bits, float, bool, bytes and None, no deeper than
 * PLAIN_DEPTH, and nothing else.
 *
 * Nothing here allocates, and nothing calls back into Python code: every type test
 * is a pointer comparison and every key is compared only once it is known to be an
 * exact str. So the check cannot run a collection, a destructor or a user's __eq__
 * midway, and the data cannot change under it.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#ifdef Py_GIL_DISABLED
/* Without the GIL another thread could change a dict as it is read, and reference
 * counts are split between threads: the build fails, and the wheel is pure Python. */
#error "the C checks need an interpreter with the GIL"
#endif

/* Deeper than ormsgpack refuses (255 levels) is never accepted here. */
#define PLAIN_DEPTH 128
/* msgpack's lengths are 32-bit. */
#define PLAIN_LENGTH 0xFFFFFFFFLL

static int
text_plain(PyObject *text)
{
#if PY_VERSION_HEX < 0x030C0000
    if (PyUnicode_READY(text) != 0) {  /* a legacy str, not yet in its compact form */
        PyErr_Clear();
        return 0;
    }
#endif
    Py_ssize_t length = PyUnicode_GET_LENGTH(text);
    if (length > PLAIN_LENGTH / 4) {
        return 0;  /* its UTF-8 form could pass msgpack's 32-bit length */
    }
    int kind = PyUnicode_KIND(text);
    if (kind == PyUnicode_1BYTE_KIND) {
        return 1;  /* latin-1 holds no surrogate */
    }
    const void *data = PyUnicode_DATA(text);
    for (Py_ssize_t index = 0; index < length; index++) {
        Py_UCS4 point = PyUnicode_READ(kind, data, index);
        if (point >= 0xD800 && point <= 0xDFFF) {
            return 0;  /* UTF-8 cannot encode it: ormsgpack refuses */
        }
    }
    return 1;
}

static int
value_plain(PyObject *value, int depth)
{
    PyTypeObject *type = Py_TYPE(value);
    if (value == Py_None || type == &PyBool_Type || type == &PyFloat_Type) {
        return 1;
    }
    if (type == &PyUnicode_Type) {
        return text_plain(value);
    }
    if (type == &PyLong_Type) {
        int overflow = 0;
        PyLong_AsLongLongAndOverflow(value, &overflow);
        /* Never fails for an exact int; outside 64 signed bits, ormsgpack decides. */
        return overflow == 0 && !PyErr_Occurred();
    }
    if (type == &PyBytes_Type) {
        return PyBytes_GET_SIZE(value) <= PLAIN_LENGTH;
    }
    if (depth >= PLAIN_DEPTH) {
        return 0;
    }
    if (type == &PyList_Type) {
        if (PyList_GET_SIZE(value) > PLAIN_LENGTH) {
            return 0;
        }
        for (Py_ssize_t index = 0; index < PyList_GET_SIZE(value); index++) {
            if (!value_plain(PyList_GET_ITEM(value, index), depth + 1)) {
                return 0;
            }
        }
        return 1;
    }
    if (type == &PyDict_Type) {
        if (PyDict_GET_SIZE(value) > PLAIN_LENGTH) {
            return 0;
        }
        Py_ssize_t position = 0;
        PyObject *key, *item;
        while (PyDict_Next(value, &position, &key, &item)) {
            if (Py_TYPE(key) != &PyUnicode_Type || !text_plain(key)
                || !value_plain(item, depth + 1)) {
                return 0;
            }
        }
        return 1;
    }
    return 0;  /* a tuple, a subclass, any other object: ormsgpack's answer */
}

/* What a field holds, one letter per field in the kinds argument. */
#define FIELD_EXACT 'e'          /* a value of exactly the type */
#define FIELD_OPTIONAL 'o'       /* None, or a value of exactly the type */
#define FIELD_LIST 'l'           /* a list held once, of items of exactly the type */
#define FIELD_LIST_OPTIONAL 'm'  /* the same, and items may be None */
#define FIELD_ANY 'a'            /* anything: pydantic keeps it as it is */

typedef struct {
    PyObject *names;       /* tuple of str: the fields, in declaration order */
    PyObject *types;       /* tuple of type: each field's type, or its items' */
    const char *kinds;     /* one FIELD_* letter per field */
    Py_ssize_t count;
    int plain;             /* also require plain data, as packs_plain does */
} RecordSpec;

/* Where an Any field's value starts counting levels for value_plain: the caller
 * proves plain data only for schemas at most this deep, so the whole stays within
 * PLAIN_DEPTH. */
#define ANY_FIELD_DEPTH (PLAIN_DEPTH / 2)

/* A scalar of exactly the type (or None when allowed), and with plain, one that
 * packs as it is: an int of 64 bits, text without a lone surrogate. */
static int
scalar_fits(PyObject *value, PyTypeObject *type, int none_too, int plain)
{
    if (none_too && value == Py_None) {
        return 1;
    }
    return Py_TYPE(value) == type && (!plain || value_plain(value, 0));
}

static int
same_name(PyObject *key, PyObject *name)
{
    if (key == name) {
        return 1;
    }
    if (!PyUnicode_CheckExact(key)) {
        return 0;  /* a str subclass, bytes or anything else: never plain and equal */
    }
    /* Both exact str: the comparison runs no Python code and cannot fail. */
    return PyUnicode_Compare(key, name) == 0;
}

static int
items_fit(PyObject *items, PyTypeObject *type, int none_too, int plain)
{
    if (Py_TYPE(items) != &PyList_Type || Py_REFCNT(items) != 1
        || (plain && PyList_GET_SIZE(items) > PLAIN_LENGTH)) {
        return 0;
    }
    Py_ssize_t size = PyList_GET_SIZE(items);
    for (Py_ssize_t index = 0; index < size; index++) {
        if (!scalar_fits(PyList_GET_ITEM(items, index), type, none_too, plain)) {
            return 0;
        }
    }
    return 1;
}

/* Whether one record, borrowed from its parent, fits: its parent must hold the only
 * reference, which is what the Python loop's reference count test means. */
static int
record_fits(PyObject *record, const RecordSpec *spec)
{
    if (Py_TYPE(record) != &PyDict_Type || Py_REFCNT(record) != 1
        || PyDict_GET_SIZE(record) != spec->count) {
        return 0;
    }
    Py_ssize_t position = 0, field = 0;
    PyObject *key, *value;
    while (PyDict_Next(record, &position, &key, &value)) {
        if (!same_name(key, PyTuple_GET_ITEM(spec->names, field))) {
            return 0;
        }
        PyTypeObject *type = (PyTypeObject *)PyTuple_GET_ITEM(spec->types, field);
        switch (spec->kinds[field]) {
        case FIELD_EXACT:
        case FIELD_OPTIONAL:
            if (!scalar_fits(value, type, spec->kinds[field] == FIELD_OPTIONAL, spec->plain)) {
                return 0;
            }
            break;
        case FIELD_LIST:
        case FIELD_LIST_OPTIONAL:
            if (!items_fit(value, type, spec->kinds[field] == FIELD_LIST_OPTIONAL, spec->plain)) {
                return 0;
            }
            break;
        default:  /* FIELD_ANY: pydantic keeps anything, plain data or not */
            if (spec->plain && !value_plain(value, ANY_FIELD_DEPTH)) {
                return 0;
            }
            break;
        }
        field++;
    }
    return 1;
}

static PyObject *
records_fit(PyObject *module, PyObject *args)
{
    (void)module;
    PyObject *container, *names, *types, *kinds, *key_type;
    int plain = 0;
    if (!PyArg_ParseTuple(args, "OO!O!SO|p:records_fit", &container, &PyTuple_Type, &names,
                          &PyTuple_Type, &types, &kinds, &key_type, &plain)) {
        return NULL;
    }
    RecordSpec spec = {names, types, PyBytes_AS_STRING(kinds), PyTuple_GET_SIZE(names), plain};
    if (PyTuple_GET_SIZE(types) != spec.count || PyBytes_GET_SIZE(kinds) != spec.count) {
        PyErr_SetString(PyExc_ValueError, "records_fit: names, types and kinds differ in length");
        return NULL;
    }
    for (Py_ssize_t field = 0; field < spec.count; field++) {
        if (!PyUnicode_CheckExact(PyTuple_GET_ITEM(names, field))
            || !PyType_Check(PyTuple_GET_ITEM(types, field))
            || strchr("eolma", spec.kinds[field]) == NULL || spec.kinds[field] == '\0') {
            PyErr_SetString(PyExc_ValueError, "records_fit: a field is not (str, type, kind)");
            return NULL;
        }
    }
    if (key_type != Py_None && !PyType_Check(key_type)) {
        PyErr_SetString(PyExc_TypeError, "records_fit: key_type must be a type or None");
        return NULL;
    }
    if (plain && key_type != (PyObject *)&PyUnicode_Type && PyDict_CheckExact(container)) {
        PyErr_SetString(PyExc_ValueError, "records_fit: plain data has str keys only");
        return NULL;
    }
    if (PyDict_CheckExact(container)) {
        Py_ssize_t position = 0;
        PyObject *key, *record;
        while (PyDict_Next(container, &position, &key, &record)) {
            if (key_type != Py_None && Py_TYPE(key) != (PyTypeObject *)key_type) {
                Py_RETURN_FALSE;
            }
            if (plain && !text_plain(key)) {
                Py_RETURN_FALSE;
            }
            if (!record_fits(record, &spec)) {
                Py_RETURN_FALSE;
            }
        }
        Py_RETURN_TRUE;
    }
    if (PyList_CheckExact(container)) {
        Py_ssize_t size = PyList_GET_SIZE(container);
        for (Py_ssize_t index = 0; index < size; index++) {
            if (!record_fits(PyList_GET_ITEM(container, index), &spec)) {
                Py_RETURN_FALSE;
            }
        }
        Py_RETURN_TRUE;
    }
    PyErr_SetString(PyExc_TypeError, "records_fit: the container must be a dict or a list");
    return NULL;
}

static PyObject *
packs_plain(PyObject *module, PyObject *value)
{
    (void)module;
    return PyBool_FromLong(value_plain(value, 0));
}

static PyMethodDef methods[] = {
    {"records_fit", records_fit, METH_VARARGS,
     "records_fit(container, names, types, kinds, key_type, plain=False) -> bool\n\n"
     "Whether every record in a dict's values or a list's items fits in place;\n"
     "with plain, also whether each packs as it is (as packs_plain says)."},
    {"packs_plain", packs_plain, METH_O,
     "packs_plain(value) -> bool\n\n"
     "True only when ormsgpack packs value as plain data, as it is."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_cchecks",
    "Checks of a restore's data, in C.", -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__cchecks(void)
{
    return PyModule_Create(&module);
}
