"""A TCP proxy on loopback that a test can cut and restore: a real network fault
between the engine and PostgreSQL, without stopping the shared server.

The upstream is a TCP address or, as for the embedded server, a Unix socket."""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit


class TcpProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        # A host that is a directory names PostgreSQL's Unix socket there.
        self._target = (target_host, target_port)
        self._server: asyncio.Server | None = None
        self._links: set[asyncio.StreamWriter] = set()
        self._open = True
        self._flowing = asyncio.Event()
        self._flowing.set()
        self.port = 0

    @classmethod
    async def in_front_of(cls, dsn: str) -> tuple[TcpProxy, str]:
        """A started proxy for the server in `dsn`, and the dsn through it."""
        parts = urlsplit(dsn)
        query = parse_qs(parts.query)
        host = query.pop("host", [parts.hostname or "127.0.0.1"])[0]
        proxy = cls(host, parts.port or 5432)
        await proxy.start()
        auth = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
        rewritten = parts._replace(
            netloc=f"{auth}127.0.0.1:{proxy.port}", query=urlencode(query, doseq=True)
        )
        return proxy, urlunsplit(rewritten)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def cut(self) -> None:
        """Drop every connection and refuse new ones, as a dead network would."""
        self._open = False
        for writer in list(self._links):
            writer.transport.abort()
        self._links.clear()

    def restore(self) -> None:
        self._open = True

    def hold(self) -> None:
        """Keep the connections but pass nothing on (what is sent waits here): a
        request already on its way, not yet at the server."""
        self._flowing.clear()

    def release(self) -> None:
        """Pass on what was held, and everything after it."""
        self._flowing.set()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self._open:
            writer.transport.abort()
            return
        host, port = self._target
        try:
            if host.startswith("/"):
                path = f"{host}/.s.PGSQL.{port}"
                up_reader, up_writer = await asyncio.open_unix_connection(path)
            else:
                up_reader, up_writer = await asyncio.open_connection(host, port)
        except OSError:
            writer.transport.abort()
            return
        self._links.update((writer, up_writer))
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                await self._flowing.wait()
                if not self._open:
                    break
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            self._links.discard(writer)
            writer.transport.abort()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()
