-- Book streams carry their depth (`book` = 0, the exchange's full-depth channel; `book:5` = 5, …),
-- part of the natural key: one symbol's `books` and `books5` rows never collide.
ALTER TABLE book_messages ADD COLUMN IF NOT EXISTS depth integer NOT NULL DEFAULT 0;
ALTER TABLE book_messages DROP CONSTRAINT IF EXISTS book_messages_pkey;
ALTER TABLE book_messages ADD PRIMARY KEY (exchange, symbol, depth, seq, action, timestamp_exchange);

-- The gap ledger: every stretch of a stream known to be missing, why, and whether REST made it whole.
-- A later record of the same (stream, cause, from) updates it (a resynchronisation that ended, a
-- backfill that finished). Small (one row per gap), so not partitioned.
CREATE TABLE IF NOT EXISTS gaps (
    exchange    text        NOT NULL,
    symbol      text        NOT NULL,
    feed        text        NOT NULL,   -- candles:1m, trades, book, book:5, ticker
    cause       text        NOT NULL
        CHECK (cause IN ('reconnect', 'sequence_break', 'checksum', 'refused', 'sink')),
    from_time   timestamptz NOT NULL,
    to_time     timestamptz NOT NULL,
    missing     bigint      NOT NULL,   -- bars or fills where countable, else 0
    recovered   boolean     NOT NULL,
    reason      text        NOT NULL,
    recorded_at timestamptz NOT NULL,
    PRIMARY KEY (exchange, symbol, feed, cause, from_time)
);
CREATE INDEX IF NOT EXISTS gaps_time ON gaps (to_time);
