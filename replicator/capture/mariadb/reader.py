"""mysql-replication's binlog reader with a fast path for the events every transaction is made of.

`BinLogStreamReader.fetchone` builds, for every event, a `BinLogPacketWrapper` and an event object whose
constructors unpack the header with `struct`, look the server type up through the control connection and
parse the body field by field; a one-row transaction is four such events (GTID, TABLE_MAP, WRITE_ROWS,
XID), about 120 µs in all, and that was most of what the capture paid on top of Kafka. `CaptureReader`
reads the packets itself and handles those four kinds from the bytes:

- GTID and XID events become small `Gtid` / `Xid` records holding what capture reads of them;
- a TABLE_MAP of a table id already known is skipped, as the library skips it with `freeze_schema`;
- a rows event of a table id the capture does not map (`wanted`) is skipped, as capture would skip it;
  one it maps becomes `Rows`, the packet's bytes, decoded by `rows.decode_rows_event` or, when that
  declines, by the library's own event (`library_event`).

Every other packet (rotate, format description, a new table map, query, heartbeat, ...) goes through the
library's own wrapping with the same bookkeeping its `fetchone` does (positions, table maps, format
description), and connecting and reconnecting stay the library's (the first call after a (re)connect is
its `fetchone`). Capture does not use `end_log_pos` or `skip_to_timestamp`, so they are refused here.

This reads private attributes of mysql-replication 1.0.x (`_BinLogStreamReader__*`); `CaptureReader`
checks at construction that they are all there, so another version fails at start-up, not mid-stream.
"""

from __future__ import annotations

import struct
from collections.abc import Container
from typing import Any

import pymysql
from pymysql.protocol import MysqlPacket
from pymysqlreplication import BinLogStreamReader
from pymysqlreplication.binlogstream import MYSQL_EXPECTED_ERROR_CODES
from pymysqlreplication.constants.BINLOG import (
    FORMAT_DESCRIPTION_EVENT,
    MARIADB_GTID_EVENT,
    ROTATE_EVENT,
    TABLE_MAP_EVENT,
    XID_EVENT,
)
from pymysqlreplication.event import MariadbGtidEvent, XidEvent
from pymysqlreplication.packet import BinLogPacketWrapper

from replicator.capture.mariadb.rows import KNOWN_POST_HEADER, ROWS_EVENT_TYPES
from replicator.errors import FatalError

# The 19-byte event header after the OK byte: timestamp, type, server id, event size, next position, flags.
_unpack_header = struct.Struct("<IBIIIH").unpack_from
_unpack_gtid = struct.Struct("<QIB").unpack_from  # sequence number, domain id, flags
_BODY = 20
_CHECKSUM_LEN = 4

_PRIVATE = "_BinLogStreamReader__"
_CONNECTED_STREAM = _PRIVATE + "connected_stream"
_CONNECTED_CTL = _PRIVATE + "connected_ctl"
# The library's private state that `BinLogPacketWrapper` takes after (packet, table map, control connection,
# server version), in its argument order.
_WRAPPER_STATE = (
    "use_checksum", "allowed_events_in_packet", "only_tables", "ignored_tables", "only_schemas",
    "ignored_schemas", "freeze_schema", "ignore_decode_errors", "verify_checksum", "optional_meta_data",
    "enable_logging", "use_column_name_cache", "post_header_lengths",
)
# The library's private state this reader reads or sets (see the module docstring).
_PRIVATE_NAMES = ("connected_stream", "connected_ctl", "allowed_events", *_WRAPPER_STATE)


class Gtid:
    """What capture reads of a MariaDB GTID event (`MariadbGtidEvent` and its packet header)."""

    __slots__ = ("domain_id", "flags", "gtid", "gtid_seq_no", "header_flags", "log_pos", "server_id", "timestamp")

    def __init__(
        self, domain_id: int, server_id: int, gtid_seq_no: int, flags: int, header_flags: int, timestamp: int,
        log_pos: int,
    ) -> None:
        self.domain_id = domain_id
        self.server_id = server_id
        self.gtid_seq_no = gtid_seq_no
        self.gtid = f"{domain_id}-{server_id}-{gtid_seq_no}"
        self.flags = flags  # the GTID event's own flags (FL_STANDALONE, ...)
        self.header_flags = header_flags  # the event header's (LOG_EVENT_SKIP_REPLICATION_F, ...)
        self.timestamp = timestamp
        self.log_pos = log_pos

    @classmethod
    def of(cls, event: Any) -> Gtid:
        return cls(
            event.domain_id, event.server_id, event.gtid_seq_no, event.flags, event.packet.flags, event.timestamp,
            event.packet.log_pos,
        )


class Xid:
    """An XID event (a transaction's commit): capture needs only its position."""

    __slots__ = ("log_pos",)

    def __init__(self, log_pos: int) -> None:
        self.log_pos = log_pos


class Rows:
    """A rows event of a table capture maps, undecoded: the whole packet and where its rows end."""

    __slots__ = ("data", "end", "event_type", "log_pos", "post_header", "server_id", "table_id")

    def __init__(
        self, data: bytes, event_type: int, table_id: int, server_id: int, log_pos: int, end: int, post_header: int
    ) -> None:
        self.data = data
        self.event_type = event_type
        self.table_id = table_id
        self.server_id = server_id
        self.log_pos = log_pos
        self.end = end
        self.post_header = post_header


class CaptureReader(BinLogStreamReader):  # type: ignore[misc]  # the library is untyped
    """`BinLogStreamReader` whose `fetchone` yields `Gtid`, `Xid` and `Rows` for the common events (see
    the module docstring) and the library's event objects for everything else.

    `wanted` holds the table ids whose rows the caller decodes; it is read at every rows event, so the
    caller may change it (capture's map of table ids) as table maps arrive.
    """

    def __init__(self, *args: Any, wanted: Container[int], **kwargs: Any) -> None:
        if kwargs.get("end_log_pos") or kwargs.get("skip_to_timestamp"):
            raise ValueError("CaptureReader does not support end_log_pos or skip_to_timestamp")
        super().__init__(*args, **kwargs)
        missing = [name for name in _PRIVATE_NAMES if not hasattr(self, _PRIVATE + name)]
        if missing:
            raise FatalError(
                "the installed mysql-replication lacks the reader state the MariaDB capture relies on "
                f"({', '.join(missing)}); install mysql-replication 1.0.x"
            )
        self.wanted = wanted
        self._checksum_len = 0
        self._post_headers: dict[int, int] = {}
        self._learn_format()

    def _learn_format(self) -> None:
        """Cache what the library learnt of the stream's format: whether events carry a CRC32 (found out
        when it connects) and the rows events' post-header lengths (from the format description event).
        Both change only inside the library's own code, after which this is called again."""
        self._checksum_len = _CHECKSUM_LEN if getattr(self, _PRIVATE + "use_checksum") else 0
        lengths = getattr(self, _PRIVATE + "post_header_lengths")
        self._post_headers = {
            t: lengths[t - 1] if lengths and t - 1 < len(lengths) else known for t, known in KNOWN_POST_HEADER.items()
        }

    def fetchone(self) -> Any:
        while True:
            if not getattr(self, _CONNECTED_STREAM) or not getattr(self, _CONNECTED_CTL):
                # (Re)connecting, and the first event after it, are the library's.
                event = super().fetchone()
                self._learn_format()
                return _adapted(event)
            try:
                packet = self._stream_connection._read_packet()
            except pymysql.OperationalError as error:
                code = error.args[0] if error.args else None
                if code in MYSQL_EXPECTED_ERROR_CODES:
                    # As the library does: reconnect from `auto_position` on the next round.
                    self._stream_connection.close()
                    setattr(self, _CONNECTED_STREAM, False)
                    continue
                raise
            if packet.is_eof_packet():
                self.close()
                return None
            if not packet.is_ok_packet():
                continue
            data: bytes = packet._data
            timestamp, event_type, server_id, event_size, log_pos, header_flags = _unpack_header(data, 1)
            if event_type in ROWS_EVENT_TYPES:
                if log_pos:
                    self.log_pos = log_pos
                table_id = int.from_bytes(data[_BODY : _BODY + 6], "little")
                if table_id not in self.table_map or table_id not in self.wanted:
                    continue  # the library skips unknown ids; capture skips tables it does not map
                # Where the library stops reading rows: the event's size less header and checksum.
                end = _BODY + event_size - 19 - self._checksum_len
                return Rows(data, event_type, table_id, server_id, log_pos, end, self._post_headers[event_type])
            if event_type == MARIADB_GTID_EVENT:
                if log_pos:
                    self.log_pos = log_pos
                seq, domain, flags = _unpack_gtid(data, _BODY)
                return Gtid(domain, server_id, seq, flags, header_flags, timestamp, log_pos)
            if event_type == XID_EVENT:
                if log_pos:
                    self.log_pos = log_pos
                return Xid(log_pos)
            if event_type == TABLE_MAP_EVENT and getattr(self, _PRIVATE + "freeze_schema"):
                table_id = int.from_bytes(data[_BODY : _BODY + 6], "little")
                if table_id in self.table_map:
                    if log_pos:
                        self.log_pos = log_pos
                    continue  # frozen: the library would not parse it again either
            event = self._library_event(packet)
            if event is not None:
                return _adapted(event)

    def _wrap(self, packet: MysqlPacket) -> Any:
        return BinLogPacketWrapper(packet, self.table_map, self._ctl_connection, self.mysql_version,
                                   *(getattr(self, _PRIVATE + name) for name in _WRAPPER_STATE))

    def _library_event(self, packet: MysqlPacket) -> Any:
        """The library's `fetchone` for one packet it has read: its event, or None when it skips it."""
        wrapped = self._wrap(packet)
        if wrapped.event_type == ROTATE_EVENT:
            self.log_pos = wrapped.event.position
            self.log_file = wrapped.event.next_binlog
            # Table ids are per server run; the first (fake) rotate of a connection has timestamp 0.
            if wrapped.timestamp != 0:
                self.table_map = {}
        elif wrapped.log_pos:
            self.log_pos = wrapped.log_pos
        if wrapped.event_type == FORMAT_DESCRIPTION_EVENT and wrapped.event is not None:
            self.mysql_version = wrapped.event.mysql_version
            setattr(self, _PRIVATE + "post_header_lengths", wrapped.event.post_header_len)
            self._learn_format()
        if wrapped.event_type == TABLE_MAP_EVENT and wrapped.event is not None:
            self.table_map[wrapped.event.table_id] = wrapped.event.get_table()
        if wrapped.event is None or wrapped.event.__class__ not in getattr(self, _PRIVATE + "allowed_events"):
            return None
        return wrapped.event

    def library_event(self, rows: Rows) -> Any:
        """mysql-replication's own event object for `rows` (its `.rows` decode it the general way)."""
        wrapped = self._wrap(MysqlPacket(rows.data, "utf8"))
        if wrapped.event is None:
            raise FatalError(f"mysql-replication did not read the rows event of table id {rows.table_id}")
        return wrapped.event


def _adapted(event: Any) -> Any:
    """The library's GTID and XID events as this module's records; anything else unchanged."""
    if isinstance(event, MariadbGtidEvent):
        return Gtid.of(event)
    if isinstance(event, XidEvent):
        return Xid(event.packet.log_pos)
    return event
