/* Three checks of a restore's data, as loops in C: each stands in for a Python loop or
 * a packing that does more work than the answer needs, and each answers as that does.
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
 * records_bytes_fit: whether msgspec's typed decoding of a collection of records is
 * exact, read from the msgpack bytes alone (see the comment above it).
 *
 * Nothing here allocates (but the small tuple records_bytes_fit answers with), and
 * nothing calls back into Python code: every type test is a pointer comparison and
 * every key is compared only once it is known to be an exact str. So the check cannot
 * run a collection, a destructor or a user's __eq__ midway, and the data cannot
 * change under it.
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

/* --- records_bytes_fit: the bytes collections of records decode from ------------
 *
 * msgspec decodes a section straight into its schema's typed form. Its value is what
 * the reference decoder gives (and validation keeps) when the bytes say, in msgpack's
 * own types, exactly what the form declares: each record a map of its fields in
 * declaration order and nothing else, each value of its field's msgpack type (so no
 * int where a float is declared, which msgspec would turn into a float), no ext, and
 * no map whose keys could repeat, except the collections, whose sizes the caller
 * compares with those of the dicts msgspec built. records_bytes_fit reads the bytes
 * for that, and only that: it builds no object, so it costs a fraction of packing the
 * value again to compare the bytes, which is what proves the same for other forms.
 *
 * The layouts it reads (statemigrate/_model/_inplace.py, records_layout): a dict under
 * str keys or a list of flat records, or a root record whose fields are flat or each
 * hold such a collection. A flat record's fields are those records_fit takes.
 *
 * It never reads past the buffer: every length is checked against what is left before
 * it is used. Text is not checked for UTF-8 here: msgspec refuses what Python's
 * strict decoder refuses, and a refusal sends the bytes the reference way.
 */

/* Scalar classes, one letter per field in the scalars argument. */
#define CLASS_INT 'i'
#define CLASS_FLOAT 'f'
#define CLASS_TEXT 's'
#define CLASS_BOOL 'b'
#define CLASS_BYTES 'y'
#define CLASS_NONE 'n'
#define CLASS_ANY '*'
/* How deep an Any field's value may nest: far inside every decoder's limit. */
#define ANY_BYTES_DEPTH 32

typedef struct {
    const unsigned char *at;
    const unsigned char *end;
    Py_ssize_t containers;  /* maps and lists met so far */
    Py_ssize_t budget;      /* how many the reference decoder would build */
} Cursor;

static int
take(Cursor *cursor, Py_ssize_t size, const unsigned char **start)
{
    if (size < 0 || cursor->end - cursor->at < size) {
        return 0;
    }
    *start = cursor->at;
    cursor->at += size;
    return 1;
}

/* A big-endian unsigned number of width bytes (1, 2 or 4). */
static int
take_length(Cursor *cursor, int width, Py_ssize_t *length)
{
    const unsigned char *bytes;
    if (!take(cursor, width, &bytes)) {
        return 0;
    }
    unsigned long long value = 0;
    for (int index = 0; index < width; index++) {
        value = (value << 8) | bytes[index];
    }
    *length = (Py_ssize_t)value;  /* at most 2**32 - 1: fits a 64-bit Py_ssize_t */
    return value <= (unsigned long long)PY_SSIZE_T_MAX;
}

/* The length of a str at the cursor, its type byte already read; 0 if not a str. */
static int
text_length(Cursor *cursor, unsigned char type, Py_ssize_t *length)
{
    if (type >= 0xa0 && type <= 0xbf) {
        *length = type & 0x1f;
        return 1;
    }
    switch (type) {
    case 0xd9: return take_length(cursor, 1, length);
    case 0xda: return take_length(cursor, 2, length);
    case 0xdb: return take_length(cursor, 4, length);
    default: return 0;
    }
}

/* A whole str at the cursor: where its bytes start, and how many there are. */
static int
take_text(Cursor *cursor, const unsigned char **start, Py_ssize_t *length)
{
    const unsigned char *type;
    return take(cursor, 1, &type) && text_length(cursor, *type, length)
           && take(cursor, *length, start);
}

/* A map (is_map) or an array header; counts the container against the budget, and
 * bounds its size by the bytes left, one per item and two per entry at least. */
static int
take_container(Cursor *cursor, int is_map, Py_ssize_t *size)
{
    const unsigned char *type;
    if (!take(cursor, 1, &type)) {
        return 0;
    }
    unsigned char fixed = is_map ? 0x80 : 0x90;
    unsigned char wide = is_map ? 0xde : 0xdc;
    if (*type >= fixed && *type <= fixed + 0x0f) {
        *size = *type & 0x0f;
    }
    else if (*type == wide) {
        if (!take_length(cursor, 2, size)) return 0;
    }
    else if (*type == wide + 1) {
        if (!take_length(cursor, 4, size)) return 0;
    }
    else {
        return 0;
    }
    if (++cursor->containers > cursor->budget) {
        return 0;
    }
    return *size <= (cursor->end - cursor->at) / (is_map ? 2 : 1);
}

/* One scalar of the class (or nil when none_too), skipped. */
static int
skip_scalar(Cursor *cursor, char class, int none_too)
{
    const unsigned char *bytes;
    if (!take(cursor, 1, &bytes)) {
        return 0;
    }
    unsigned char type = *bytes;
    Py_ssize_t size;
    if (type == 0xc0) {
        return none_too || class == CLASS_NONE;
    }
    switch (class) {
    case CLASS_INT:
        if (type <= 0x7f || type >= 0xe0) return 1;
        if (type >= 0xcc && type <= 0xcf) return take(cursor, 1 << (type - 0xcc), &bytes);
        if (type >= 0xd0 && type <= 0xd3) return take(cursor, 1 << (type - 0xd0), &bytes);
        return 0;
    case CLASS_FLOAT:
        if (type == 0xca) return take(cursor, 4, &bytes);
        if (type == 0xcb) return take(cursor, 8, &bytes);
        return 0;
    case CLASS_TEXT:
        return text_length(cursor, type, &size) && take(cursor, size, &bytes);
    case CLASS_BOOL:
        return type == 0xc2 || type == 0xc3;
    case CLASS_BYTES:
        if (type < 0xc4 || type > 0xc6) return 0;
        return take_length(cursor, 1 << (type - 0xc4), &size) && take(cursor, size, &bytes);
    default:
        return 0;
    }
}

/* Any value both decoders give alike: scalars, lists, and maps of at most one
 * entry under a str key (a longer map could repeat a key, which the reference
 * decoder refuses and msgspec does not). */
static int
skip_any(Cursor *cursor, int depth)
{
    if (cursor->at >= cursor->end || depth > ANY_BYTES_DEPTH) {
        return 0;
    }
    unsigned char type = *cursor->at;
    Py_ssize_t size;
    const unsigned char *bytes;
    if ((type >= 0x90 && type <= 0x9f) || type == 0xdc || type == 0xdd) {
        if (!take_container(cursor, 0, &size)) return 0;
        for (Py_ssize_t index = 0; index < size; index++) {
            if (!skip_any(cursor, depth + 1)) return 0;
        }
        return 1;
    }
    if ((type >= 0x80 && type <= 0x8f) || type == 0xde || type == 0xdf) {
        if (!take_container(cursor, 1, &size) || size > 1) return 0;
        for (Py_ssize_t index = 0; index < size; index++) {
            Py_ssize_t key_length;
            if (!take_text(cursor, &bytes, &key_length) || !skip_any(cursor, depth + 1)) {
                return 0;
            }
        }
        return 1;
    }
    if (type == 0xc0 || type == 0xc2 || type == 0xc3) return skip_scalar(cursor, CLASS_BOOL, 1);
    if (type <= 0x7f || type >= 0xe0 || (type >= 0xcc && type <= 0xd3)) {
        return skip_scalar(cursor, CLASS_INT, 0);
    }
    if (type == 0xca || type == 0xcb) return skip_scalar(cursor, CLASS_FLOAT, 0);
    if (type >= 0xc4 && type <= 0xc6) return skip_scalar(cursor, CLASS_BYTES, 0);
    return skip_scalar(cursor, CLASS_TEXT, 0);  /* a str, or else refused */
}

/* A record's field that holds one of the collections, the next in their order. */
#define FIELD_COLLECTION 'c'
/* The most collections a layout may hold. */
#define MAX_COLLECTIONS 64

typedef struct {
    PyObject *names;      /* tuple of bytes: each field's name in UTF-8, in order */
    const char *kinds;    /* one FIELD_* letter per field, as records_fit reads them */
    const char *scalars;  /* one CLASS_* letter per field: its type, or its items' */
    Py_ssize_t count;
} LayoutSpec;

typedef struct {
    int is_map;           /* a map under str keys, else an array */
    LayoutSpec records;   /* its records, each flat: no FIELD_COLLECTION */
} CollectionSpec;

typedef struct {
    CollectionSpec collections[MAX_COLLECTIONS];
    Py_ssize_t collection_count;
    Py_ssize_t next;                    /* the collection the next 'c' field holds */
    Py_ssize_t sizes[MAX_COLLECTIONS];  /* how many records each one held */
} Layout;

static int collection_bytes_fit(Cursor *cursor, Layout *layout, Py_ssize_t which);

static int
record_bytes_fit(Cursor *cursor, const LayoutSpec *spec, Layout *layout)
{
    Py_ssize_t size;
    const unsigned char *bytes;
    if (!take_container(cursor, 1, &size) || size != spec->count) {
        return 0;
    }
    for (Py_ssize_t field = 0; field < spec->count; field++) {
        PyObject *name = PyTuple_GET_ITEM(spec->names, field);
        if (!take_text(cursor, &bytes, &size) || size != PyBytes_GET_SIZE(name)
            || memcmp(bytes, PyBytes_AS_STRING(name), (size_t)size) != 0) {
            return 0;
        }
        char class = spec->scalars[field];
        switch (spec->kinds[field]) {
        case FIELD_EXACT:
        case FIELD_OPTIONAL:
            if (!skip_scalar(cursor, class, spec->kinds[field] == FIELD_OPTIONAL)) return 0;
            break;
        case FIELD_LIST:
        case FIELD_LIST_OPTIONAL:
            if (!take_container(cursor, 0, &size)) return 0;
            for (Py_ssize_t index = 0; index < size; index++) {
                if (!skip_scalar(cursor, class, spec->kinds[field] == FIELD_LIST_OPTIONAL)) {
                    return 0;
                }
            }
            break;
        case FIELD_COLLECTION:
            if (layout == NULL || layout->next >= layout->collection_count
                || !collection_bytes_fit(cursor, layout, layout->next++)) {
                return 0;
            }
            break;
        default:  /* FIELD_ANY */
            if (!skip_any(cursor, 0)) return 0;
            break;
        }
    }
    return 1;
}

static int
collection_bytes_fit(Cursor *cursor, Layout *layout, Py_ssize_t which)
{
    const CollectionSpec *spec = &layout->collections[which];
    Py_ssize_t size, key_length;
    const unsigned char *bytes;
    if (!take_container(cursor, spec->is_map, &size)) {
        return 0;
    }
    for (Py_ssize_t index = 0; index < size; index++) {
        /* A key is any str: msgspec checks its UTF-8, and the caller compares the
         * map's size with the dict's to find a repeated one. */
        if (spec->is_map && !take_text(cursor, &bytes, &key_length)) {
            return 0;
        }
        if (!record_bytes_fit(cursor, &spec->records, NULL)) {
            return 0;
        }
    }
    layout->sizes[which] = size;
    return 1;
}

/* Reads (names, kinds, scalars) into spec; flat forbids collection fields. */
static int
parse_fields(PyObject *fields, LayoutSpec *spec, int flat)
{
    PyObject *names, *kinds, *scalars;
    if (!PyTuple_Check(fields)
        || !PyArg_ParseTuple(fields, "O!SS", &PyTuple_Type, &names, &kinds, &scalars)) {
        return 0;
    }
    spec->names = names;
    spec->kinds = PyBytes_AS_STRING(kinds);
    spec->scalars = PyBytes_AS_STRING(scalars);
    spec->count = PyTuple_GET_SIZE(names);
    if (PyBytes_GET_SIZE(kinds) != spec->count || PyBytes_GET_SIZE(scalars) != spec->count) {
        return 0;
    }
    for (Py_ssize_t field = 0; field < spec->count; field++) {
        char kind = spec->kinds[field], class = spec->scalars[field];
        PyObject *name = PyTuple_GET_ITEM(names, field);
        if (!PyBytes_CheckExact(name) || kind == '\0'
            || strchr(flat ? "eolma" : "eolmac", kind) == NULL || class == '\0'
            || strchr("ifsbyn*", class) == NULL) {
            return 0;
        }
        /* A name twice would take a record whose key repeats, which decodes smaller. */
        for (Py_ssize_t earlier = 0; earlier < field; earlier++) {
            PyObject *other = PyTuple_GET_ITEM(names, earlier);
            if (PyBytes_CheckExact(other) && PyBytes_GET_SIZE(other) == PyBytes_GET_SIZE(name)
                && memcmp(PyBytes_AS_STRING(other), PyBytes_AS_STRING(name),
                          (size_t)PyBytes_GET_SIZE(name)) == 0) {
                return 0;
            }
        }
    }
    return 1;
}

static PyObject *
records_bytes_fit(PyObject *module, PyObject *args)
{
    (void)module;
    Py_buffer raw;
    PyObject *root, *collections;
    Py_ssize_t budget;
    if (!PyArg_ParseTuple(args, "y*OO!n:records_bytes_fit", &raw, &root, &PyTuple_Type,
                          &collections, &budget)) {
        return NULL;
    }
    Layout layout;
    LayoutSpec root_spec;
    layout.collection_count = PyTuple_GET_SIZE(collections);
    layout.next = 0;
    int valid = layout.collection_count >= 1 && layout.collection_count <= MAX_COLLECTIONS
                && (root == Py_None || parse_fields(root, &root_spec, 0));
    for (Py_ssize_t which = 0; valid && which < layout.collection_count; which++) {
        PyObject *item = PyTuple_GET_ITEM(collections, which), *is_map = NULL, *fields;
        CollectionSpec *spec = &layout.collections[which];
        /* An exact bool, so that reading the layout runs no Python code either. */
        valid = PyTuple_Check(item)
                && PyArg_ParseTuple(item, "O!O", &PyBool_Type, &is_map, &fields)
                && parse_fields(fields, &spec->records, 1);
        spec->is_map = is_map == Py_True;
    }
    if (!valid) {
        PyBuffer_Release(&raw);
        if (PyErr_Occurred() && !PyErr_ExceptionMatches(PyExc_TypeError)) {
            return NULL;  /* out of memory, say: not the layout's fault */
        }
        PyErr_Clear();
        PyErr_SetString(PyExc_ValueError, "records_bytes_fit: the layout is not well formed");
        return NULL;
    }
    Cursor cursor = {raw.buf, (const unsigned char *)raw.buf + raw.len, 0, budget};
    int fits = root == Py_None ? collection_bytes_fit(&cursor, &layout, layout.next++)
                               : record_bytes_fit(&cursor, &root_spec, &layout);
    fits = fits && cursor.at == cursor.end && layout.next == layout.collection_count;
    PyBuffer_Release(&raw);
    if (!fits) {
        Py_RETURN_NONE;
    }
    PyObject *sizes = PyTuple_New(layout.collection_count);
    for (Py_ssize_t which = 0; sizes != NULL && which < layout.collection_count; which++) {
        PyObject *size = PyLong_FromSsize_t(layout.sizes[which]);
        if (size == NULL) {
            Py_CLEAR(sizes);
            break;
        }
        PyTuple_SET_ITEM(sizes, which, size);
    }
    return sizes;
}

static PyMethodDef methods[] = {
    {"records_fit", records_fit, METH_VARARGS,
     "records_fit(container, names, types, kinds, key_type, plain=False) -> bool\n\n"
     "Whether every record in a dict's values or a list's items fits in place;\n"
     "with plain, also whether each packs as it is (as packs_plain says)."},
    {"records_bytes_fit", records_bytes_fit, METH_VARARGS,
     "records_bytes_fit(raw, root, collections, budget) -> tuple[int, ...] | None\n\n"
     "How many records each collection in raw holds when all is laid out exactly\n"
     "as declared (see the comment above it), or None."},
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
