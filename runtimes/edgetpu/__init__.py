"""The Coral Edge TPU: the readiness check, the compiler call and the runtime."""
