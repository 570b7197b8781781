#!/usr/bin/env python3
"""A typical Python Kalshi market-data collector, the baseline of the end-to-end benchmark.

It is written the way such collectors are usually written today: one asyncio process,
`websockets` for the feed, the stdlib `json` module to parse, `decimal.Decimal` to convert the
fixed-point dollar and count strings, `datetime.fromisoformat` for RFC 3339 times, and
`asyncpg` with batched multi-row INSERT statements into the same tables and units as the
platform's gatherer (sql/0002_timeseries_native.sql: prices in micro-dollars, counts in
hundredths, times in microseconds since the epoch).

Pipeline: the reader task parses each frame into row tuples and appends them to per-table
buffers; every BATCH_ROWS rows or BATCH_AGE seconds the buffers are handed to the writer task
through a bounded asyncio.Queue (a full queue blocks the reader, so the exchange sees
backpressure instead of the process growing without bound); the writer inserts each batch in
one transaction, in chunks of at most CHUNK_ROWS rows per INSERT statement.

Differences from a production collector, on purpose: no signed handshake (the benchmark's
simulator runs with `[auth] enabled = false`), no reconnect, no sequence-gap handling. When the
exchange closes the connection the collector flushes what it holds, prints "drained" on stderr
and waits for SIGTERM, so the benchmark can read its CPU time after the last commit.

Usage:
    collector.py --ws ws://HOST:PORT/trade-api/ws/v2 --rest http://HOST:PORT/trade-api/v2 \
                 --db postgresql://USER@HOST:PORT/kalshi [--gatherer-id 1]
"""

import argparse
import asyncio
import json
import signal
import sys
import time
import urllib.request
from datetime import datetime, timezone
from decimal import Decimal

import asyncpg
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

BATCH_ROWS = 5000
BATCH_AGE = 0.2
CHUNK_ROWS = 1000
QUEUE_BATCHES = 4
SUBSCRIBE_CHUNK = 10_000

E6 = Decimal(1_000_000)
E2 = Decimal(100)
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

COLUMNS = {
    "orderbook_deltas": (
        "exchange_ts", "received_ts", "gatherer_id", "ticker", "side", "price_e6", "delta_e2",
        "sid", "seq",
    ),
    "trades": (
        "exchange_ts", "received_ts", "gatherer_id", "ticker", "trade_id", "yes_price_e6",
        "no_price_e6", "count_e2", "taker_side", "taker_outcome_side", "taker_book_side",
        "is_block_trade", "source", "sid", "seq",
    ),
    "tickers": (
        "exchange_ts", "received_ts", "gatherer_id", "ticker", "price_e6", "yes_bid_e6",
        "yes_ask_e6", "yes_bid_size_e2", "yes_ask_size_e2", "last_trade_size_e2", "volume_e2",
        "open_interest_e2", "dollar_volume_e6", "dollar_open_interest_e6", "sid", "seq",
    ),
    "orderbook_snapshots": (
        "snapshot_ts", "received_ts", "gatherer_id", "ticker", "source", "sid", "seq",
        "yes_price_e6", "yes_count_e2", "no_price_e6", "no_count_e2",
    ),
}


def dollars(value):
    """A dollar amount (string or JSON number) to integer micro-dollars."""
    if value is None:
        return None
    return int(Decimal(str(value)) * E6)


def contracts(value):
    """A contract count (string or JSON number) to integer hundredths."""
    if value is None:
        return None
    return int(Decimal(str(value)) * E2)


def rfc3339_us(text):
    """An RFC 3339 timestamp to microseconds since the epoch."""
    dt = datetime.fromisoformat(text)
    return (dt - EPOCH) // _ONE_US


_ONE_US = datetime(1970, 1, 1, 0, 0, 0, 1, tzinfo=timezone.utc) - EPOCH


def list_markets(rest):
    """Every market ticker, following the REST cursor."""
    tickers, cursor = [], ""
    while True:
        with urllib.request.urlopen(f"{rest}/markets?limit=1000&cursor={cursor}") as response:
            page = json.load(response)
        tickers.extend(m["ticker"] for m in page.get("markets", []))
        cursor = page.get("cursor") or ""
        if not cursor:
            return tickers


def insert_sql(table, rows):
    columns = COLUMNS[table]
    width = len(columns)
    values = ",".join(
        "(" + ",".join(f"${r * width + c + 1}" for c in range(width)) + ")" for r in range(rows)
    )
    return f"INSERT INTO {table} ({','.join(columns)}) VALUES {values}"


class Collector:
    def __init__(self, args):
        self.args = args
        self.gid = args.gatherer_id
        self.buffers = {table: [] for table in COLUMNS}
        self.buffered = 0
        self.oldest = None
        self.queue = asyncio.Queue(maxsize=QUEUE_BATCHES)
        self.sql = {}
        self.messages = 0
        self.rows_written = 0
        self.errors = 0
        self.closing = False

    # ---- parsing -------------------------------------------------------------------------

    def handle(self, raw):
        received = time.time_ns() // 1000
        frame = json.loads(raw)
        kind = frame.get("type")
        msg = frame.get("msg") or {}
        sid = frame.get("sid")
        seq = frame.get("seq")
        gid = self.gid
        if kind == "orderbook_delta":
            ts = rfc3339_us(msg["ts"]) if "ts" in msg else msg["ts_ms"] * 1000
            self.add("orderbook_deltas", (
                ts, received, gid, msg["market_ticker"], msg["side"],
                dollars(msg["price_dollars"]), contracts(msg["delta_fp"]), sid, seq,
            ))
        elif kind == "trade":
            self.add("trades", (
                msg["ts_ms"] * 1000, received, gid, msg["market_ticker"], msg["trade_id"],
                dollars(msg["yes_price_dollars"]), dollars(msg["no_price_dollars"]),
                contracts(msg["count_fp"]), msg.get("taker_side"), msg.get("taker_outcome_side"),
                msg.get("taker_book_side"), msg.get("is_block_trade"), "ws", sid, seq,
            ))
        elif kind == "ticker":
            if "time" in msg:
                ts = rfc3339_us(msg["time"])
            else:
                ts = msg["ts_ms"] * 1000
            self.add("tickers", (
                ts, received, gid, msg["market_ticker"], dollars(msg.get("price_dollars")),
                dollars(msg.get("yes_bid_dollars")), dollars(msg.get("yes_ask_dollars")),
                contracts(msg.get("yes_bid_size_fp")), contracts(msg.get("yes_ask_size_fp")),
                contracts(msg.get("last_trade_size_fp")), contracts(msg.get("volume_fp")),
                contracts(msg.get("open_interest_fp")), dollars(msg.get("dollar_volume")),
                dollars(msg.get("dollar_open_interest")), sid, seq,
            ))
        elif kind == "orderbook_snapshot":
            yes = msg.get("yes_dollars_fp") or []
            no = msg.get("no_dollars_fp") or []
            self.add("orderbook_snapshots", (
                received, received, gid, msg["market_ticker"], "ws", sid, seq,
                [dollars(p) for p, _ in yes], [contracts(c) for _, c in yes],
                [dollars(p) for p, _ in no], [contracts(c) for _, c in no],
            ))
        elif kind == "error":
            print(f"collector: exchange error: {msg}", file=sys.stderr)
        self.messages += 1

    def add(self, table, row):
        self.buffers[table].append(row)
        self.buffered += 1
        if self.oldest is None:
            self.oldest = time.monotonic()

    # ---- batching and writing ------------------------------------------------------------

    async def seal(self):
        """Hands the buffered rows to the writer (waits while the queue is full)."""
        if not self.buffered:
            return
        batch, self.buffers = self.buffers, {table: [] for table in COLUMNS}
        self.buffered, self.oldest = 0, None
        await self.queue.put(batch)

    async def maybe_seal(self):
        if self.buffered >= BATCH_ROWS or (
            self.oldest is not None and time.monotonic() - self.oldest >= BATCH_AGE
        ):
            await self.seal()

    async def ticker_task(self):
        """Seals an old partial batch when frames stop arriving (until the feed ends: it is
        never cancelled, which could drop a batch it holds while waiting on the queue)."""
        while not self.closing:
            await asyncio.sleep(BATCH_AGE / 2)
            await self.maybe_seal()

    async def writer(self, pool):
        async with pool.acquire() as conn:
            while True:
                batch = await self.queue.get()
                if batch is None:
                    return
                async with conn.transaction():
                    for table, rows in batch.items():
                        for start in range(0, len(rows), CHUNK_ROWS):
                            chunk = rows[start:start + CHUNK_ROWS]
                            sql = self.sql.get((table, len(chunk)))
                            if sql is None:
                                sql = insert_sql(table, len(chunk))
                                self.sql[(table, len(chunk))] = sql
                            await conn.execute(sql, *[v for row in chunk for v in row])
                            self.rows_written += len(chunk)

    async def read(self, tickers):
        """One connection: subscribe `tickers`, parse every frame until the exchange closes."""
        async with connect(self.args.ws, max_size=None, ping_interval=None) as ws:
            await ws.send(json.dumps({
                "id": 1,
                "cmd": "subscribe",
                "params": {
                    "channels": ["orderbook_delta", "trade", "ticker"],
                    "market_tickers": tickers,
                },
            }))
            try:
                async for raw in ws:
                    try:
                        self.handle(raw)
                    except (KeyError, ValueError, TypeError, ArithmeticError) as e:
                        self.errors += 1
                        if self.errors <= 10:
                            print(f"collector: bad frame ({e!r}): {raw[:200]!r}", file=sys.stderr)
                    await self.maybe_seal()
            except ConnectionClosed as e:
                print(f"collector: connection closed: {e}", file=sys.stderr)

    async def run(self):
        tickers = await asyncio.get_running_loop().run_in_executor(
            None, list_markets, self.args.rest
        )
        print(f"collector: {len(tickers)} markets", file=sys.stderr)
        pool = await asyncpg.create_pool(self.args.db, min_size=1, max_size=1)
        writer = asyncio.create_task(self.writer(pool))
        ageing = asyncio.create_task(self.ticker_task())
        # The exchange refuses WebSocket messages over 1 MiB and merges repeat subscribes
        # slowly: one connection per SUBSCRIBE_CHUNK markets, one subscribe command each.
        chunks = [tickers[i:i + SUBSCRIBE_CHUNK] for i in range(0, len(tickers), SUBSCRIBE_CHUNK)]
        await asyncio.gather(*(self.read(chunk) for chunk in chunks))
        self.closing = True
        await ageing
        await self.seal()
        await self.queue.put(None)
        await writer
        print(
            f"collector: drained: {self.messages} messages, {self.rows_written} rows, "
            f"{self.errors} bad frames",
            file=sys.stderr,
            flush=True,
        )
        await pool.close()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        await stop.wait()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ws", required=True, help="WebSocket URL of the exchange")
    parser.add_argument("--rest", required=True, help="REST base URL (…/trade-api/v2)")
    parser.add_argument("--db", required=True, help="PostgreSQL URL")
    parser.add_argument("--gatherer-id", type=int, default=1, help="gatherer_id of every row")
    args = parser.parse_args()
    asyncio.run(Collector(args).run())


if __name__ == "__main__":
    main()
