"""The client socket: nonblocking reads and writes first, a trio wait (with a deadline) only when
the kernel says the call would block.

Owns: the bytes in and out of one connection. Guarantees: every wait has a deadline (a read's is
given by the caller; a write's is write_stall_timeout_s from its last progress, so a slow but
moving client is not cut off); a reset or a broken pipe becomes ClientDisconnected; a wait can be
interrupted from outside (`interrupt_read`, graceful shutdown of an idle connection).
Never does: yield to the scheduler when the call succeeds at once. The connection yields once
per request itself (`trio.lowlevel.checkpoint`), which keeps it fair to other tasks.

Why not trio.SocketStream's receive_some/send_all: each call yields to the scheduler even when the
data is there, and a deadline needs a CancelScope per call; measured on the 2-core box, those
cost more than parsing and answering a small request. Both are paid here only on the slow path.
The SocketStream still owns the socket: send_eof and aclose go through it.
"""

from __future__ import annotations

import os

import trio

from .errors import ClientDisconnected

# A body at least this big is written with writev beside its head instead of being copied into
# one buffer with it.
GATHER_MIN_BYTES = 64 * 1024


class Transport:
    __slots__ = ("stream", "_fd", "_read_scope")

    def __init__(self, stream: trio.SocketStream):
        self.stream = stream
        self._fd = stream.socket.fileno()
        self._read_scope: trio.CancelScope | None = None

    def receive_nowait(self, max_bytes: int) -> bytes | None:
        """Bytes available now (b"" at EOF), or None if a read would block."""
        try:
            return os.read(self._fd, max_bytes)
        except BlockingIOError:
            return None
        except OSError as exc:  # ECONNRESET and friends: the peer is gone
            raise ClientDisconnected(f"read failed: {exc.strerror}") from exc

    async def receive(self, max_bytes: int, deadline: float) -> bytes | None:
        """Bytes (b"" at EOF), or None when `deadline` passed or the wait was interrupted."""
        data = self.receive_nowait(max_bytes)
        if data is not None:
            return data
        with trio.CancelScope(deadline=deadline) as scope:
            self._read_scope = scope
            try:
                while True:
                    await trio.lowlevel.wait_readable(self._fd)
                    data = self.receive_nowait(max_bytes)
                    if data is not None:
                        return data
            finally:
                self._read_scope = None
        return None

    def interrupt_read(self) -> bool:
        """End a read that is waiting (it returns None). False if none was waiting."""
        if self._read_scope is None:
            return False
        self._read_scope.cancel()
        return True

    async def send_all(self, data: bytes | memoryview, stall_timeout_s: float) -> None:
        """Write all of `data`; ClientDisconnected if the peer is gone or no byte moves for
        `stall_timeout_s`. Cancellation mid-way leaves the stream unusable: close it."""
        sent = self._send_nowait(data)
        if sent == len(data):
            return
        view = memoryview(data)
        while sent < len(data):
            with trio.move_on_after(stall_timeout_s):
                await trio.lowlevel.wait_writable(self._fd)
                sent += self._send_nowait(view[sent:])
                continue
            raise ClientDisconnected(f"write made no progress for {stall_timeout_s} s")

    async def send_head_and_body(self, head: bytes, body: bytes, stall_timeout_s: float) -> None:
        """One write for a response: joined when small, gathered (no copy) when big."""
        if len(body) < GATHER_MIN_BYTES:
            await self.send_all(head + body, stall_timeout_s)
            return
        try:
            sent = os.writev(self._fd, (head, body))
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            raise ClientDisconnected(f"write failed: {exc.strerror}") from exc
        if sent < len(head):
            await self.send_all(head[sent:], stall_timeout_s)
            sent = len(head)
        if sent - len(head) < len(body):
            await self.send_all(memoryview(body)[sent - len(head):], stall_timeout_s)

    def _send_nowait(self, data: bytes | memoryview) -> int:
        try:
            return os.write(self._fd, data)
        except BlockingIOError:
            return 0
        except OSError as exc:  # EPIPE, ECONNRESET (SIGPIPE is ignored by Python)
            raise ClientDisconnected(f"write failed: {exc.strerror}") from exc

    async def linger_then_close(self, timeout_s: float, max_bytes: int, chunk_bytes: int) -> None:
        """Shut the write side, read and drop what the peer still sends (bounded), then close.

        Unread input at close makes the kernel send a reset, which can destroy the answer
        before the client has read it; this is how a careful server avoids that."""
        try:
            with trio.move_on_after(timeout_s):
                await self.stream.send_eof()
                dropped = 0
                while dropped <= max_bytes:
                    data = await self.receive(chunk_bytes, trio.current_time() + timeout_s)
                    if not data:
                        break
                    dropped += len(data)
        except (ClientDisconnected, trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        finally:
            await trio.aclose_forcefully(self.stream)

    async def aclose(self) -> None:
        await trio.aclose_forcefully(self.stream)
