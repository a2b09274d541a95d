"""A stand-in for cuda-python's runtime API (``cuda.bindings.runtime``) as the kit calls it,
for tests on machines without an NVIDIA GPU: handles are numbers, and every allocation,
stream and event is tracked so a test can check that each is released exactly once."""


class FakeCudart:
    class cudaMemcpyKind:  # noqa: N801 (cuda-python's name)
        cudaMemcpyHostToDevice = 1
        cudaMemcpyDeviceToHost = 2

    def __init__(self, fail_on: dict[str, int] | None = None):
        self.live: dict[int, str] = {}  # handle -> what it is
        self.copied: list[int] = []  # bytes of each host-to-device copy
        self.calls: dict[str, int] = {}
        self.fail_on = fail_on or {}  # call name -> the call number (1-based) that returns an error
        self._next = 0x1000

    def _call(self, name: str):
        self.calls[name] = self.calls.get(name, 0) + 1
        return self.calls[name] == self.fail_on.get(name)

    def _new(self, name: str, kind: str):
        if self._call(name):
            return (2, None)  # cudaErrorMemoryAllocation
        self._next += 0x100
        self.live[self._next] = kind
        return (0, self._next)

    def _release(self, handle: int, kind: str):
        assert self.live.pop(handle) == kind, f"{kind} {handle:#x} released twice or never taken"
        return (0,)

    def cudaMalloc(self, size):
        return self._new("cudaMalloc", "buffer")

    def cudaFree(self, pointer):
        return self._release(pointer, "buffer")

    def cudaStreamCreate(self):
        return self._new("cudaStreamCreate", "stream")

    def cudaStreamDestroy(self, stream):
        return self._release(stream, "stream")

    def cudaEventCreate(self):
        return self._new("cudaEventCreate", "event")

    def cudaEventDestroy(self, event):
        return self._release(event, "event")

    def cudaMemcpy(self, destination, source, size, kind):
        self.copied.append(size)
        return (0,)

    def cudaMemcpyAsync(self, destination, source, size, kind, stream):
        return (0,)

    def cudaEventRecord(self, event, stream):
        return (0,)

    def cudaStreamSynchronize(self, stream):
        return (1,) if self._call("cudaStreamSynchronize") else (0,)

    def cudaEventElapsedTime(self, start, end):
        return (0, 0.25)
