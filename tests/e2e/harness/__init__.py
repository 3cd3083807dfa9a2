"""End-to-end harness: a real Home Assistant, real Mosquitto brokers, the bridge and the
simulated GX, all inside one network namespace that scripts/e2e-ha creates.

Only the standard library is used, so the runner works with the host's Python 3.11 while
Home Assistant itself runs with Python 3.14 in a Debian chroot.
"""
