"""Framework handlers, one module per framework; import the one you use."""
