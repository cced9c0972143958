"""Child scripts and shared helpers of the restore tests."""
