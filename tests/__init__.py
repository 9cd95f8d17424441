"""Test-suite root. Being a package puts the repository root on sys.path under pytest, so
shared machinery is imported as ``tests.helpers`` and cannot clash with a directory-local
``helpers`` module elsewhere in the tree."""
