"""Helpers shared by the test suites: real servers, real etcd."""
