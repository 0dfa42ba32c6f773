-- 03: trades, order-book messages and tickers, partitioned by month on the exchange's event time,
-- plus the per-stream watermark table (DESIGN.md §5). Column names match the Parquet files.

-- One row per fill; insert-or-ignore on the exchange's trade id.
CREATE TABLE IF NOT EXISTS trades (
    exchange            text        NOT NULL,
    symbol              text        NOT NULL,
    trade_id            text        NOT NULL,   -- the exchange's id, as sent
    price               numeric     NOT NULL,
    size                numeric     NOT NULL,
    side                text        NOT NULL CHECK (side IN ('buy', 'sell')),
    timestamp_exchange  timestamptz NOT NULL,
    timestamp_collector timestamptz NOT NULL,
    -- A trade id has one time, so this is the (exchange, symbol, trade_id) key; the partition key
    -- must be part of every unique index of a partitioned table.
    PRIMARY KEY (exchange, symbol, trade_id, timestamp_exchange)
) PARTITION BY RANGE (timestamp_exchange);
CREATE INDEX IF NOT EXISTS trades_time_brin ON trades USING brin (timestamp_exchange);

-- One row per exchange book message: bids/asks are [price, size] pairs as the exchange sent them.
-- `seq` is the exchange's sequence (its event time in µs where it has none).
CREATE TABLE IF NOT EXISTS book_messages (
    exchange            text        NOT NULL,
    symbol              text        NOT NULL,
    seq                 bigint      NOT NULL,
    prev_seq            bigint,
    action              text        NOT NULL CHECK (action IN ('snapshot', 'update')),
    bids                numeric[]   NOT NULL,   -- {{price,size},...} or {}
    asks                numeric[]   NOT NULL,
    checksum            bigint,
    timestamp_exchange  timestamptz NOT NULL,
    timestamp_collector timestamptz NOT NULL,
    PRIMARY KEY (exchange, symbol, seq, action, timestamp_exchange)
) PARTITION BY RANGE (timestamp_exchange);
CREATE INDEX IF NOT EXISTS book_messages_time_brin ON book_messages USING brin (timestamp_exchange);

-- Best bid/ask, last price and the exchange's 24 h fields (NULL where it does not send them).
CREATE TABLE IF NOT EXISTS tickers (
    exchange            text        NOT NULL,
    symbol              text        NOT NULL,
    bid_price           numeric,
    bid_size            numeric,
    ask_price           numeric,
    ask_size            numeric,
    last_price          numeric,
    last_size           numeric,
    open_24h            numeric,
    high_24h            numeric,
    low_24h             numeric,
    volume_24h          numeric,
    quote_volume_24h    numeric,
    timestamp_exchange  timestamptz NOT NULL,
    timestamp_collector timestamptz NOT NULL,
    PRIMARY KEY (exchange, symbol, timestamp_exchange)
) PARTITION BY RANGE (timestamp_exchange);
CREATE INDEX IF NOT EXISTS tickers_time_brin ON tickers USING brin (timestamp_exchange);

-- The newest stored event of each stream, written in the same transaction as the rows, so it is
-- readable at start-up without scanning the data tables (and never ahead of them).
CREATE TABLE IF NOT EXISTS stream_watermarks (
    stream      text        PRIMARY KEY,    -- exchange/feed/symbol, e.g. okx/trades/BTC-USDT
    event_time  timestamptz NOT NULL,
    event_id    text,                       -- trade id or sequence, where the feed has one
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Creates the month partition of `parent` (candles, trades, book_messages, tickers) holding `at`
-- (UTC months); safe to race. Partitions are named <parent>_YYYY_MM.
CREATE OR REPLACE FUNCTION ensure_partition(parent text, at timestamptz) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    month_start timestamptz := date_trunc('month', at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC';
    month_end   timestamptz := (date_trunc('month', at AT TIME ZONE 'UTC') + interval '1 month') AT TIME ZONE 'UTC';
    part_name   text        := format('%s_%s', parent, to_char(at AT TIME ZONE 'UTC', 'YYYY_MM'));
BEGIN
    IF parent NOT IN ('candles', 'trades', 'book_messages', 'tickers') THEN
        RAISE EXCEPTION 'ensure_partition: unknown table %', parent;
    END IF;
    IF to_regclass(part_name) IS NULL THEN
        BEGIN
            EXECUTE format('CREATE TABLE IF NOT EXISTS %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)',
                           part_name, parent, month_start, month_end);
        EXCEPTION WHEN duplicate_table OR unique_violation THEN
            NULL;  -- another session created it first
        END;
    END IF;
    RETURN part_name;
END;
$$;

-- Partitions of every table from `months_back` months before now to `months_ahead` after.
CREATE OR REPLACE FUNCTION ensure_partitions_ahead(months_back integer, months_ahead integer)
RETURNS SETOF text LANGUAGE plpgsql AS $$
DECLARE
    i integer;
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['candles', 'trades', 'book_messages', 'tickers'] LOOP
        FOR i IN -months_back..months_ahead LOOP
            RETURN NEXT ensure_partition(t, now() + make_interval(months => i));
        END LOOP;
    END LOOP;
END;
$$;

-- A database written by an earlier version has candles but no watermarks: derive them once.
INSERT INTO stream_watermarks (stream, event_time)
SELECT exchange || '/candles:' || timeframe || '/' || symbol, max(open_time)
FROM candles WHERE confirmed GROUP BY exchange, timeframe, symbol
ON CONFLICT (stream) DO NOTHING;
