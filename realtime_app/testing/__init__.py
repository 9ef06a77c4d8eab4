"""Tools that drive a server from outside, shared by the tests and the scripts (the benchmark,
the soak): nothing in the server imports them (the import contracts in setup.cfg say so)."""
