-- 02: candles, partitioned by month on open time (DESIGN.md §5).
-- Column names match the Parquet files, so a query moves between them.

CREATE TABLE IF NOT EXISTS schema_version (
    version    integer     PRIMARY KEY,
    name       text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS candles (
    exchange            text        NOT NULL,
    symbol              text        NOT NULL,
    timeframe           text        NOT NULL,   -- case-sensitive key: 1m, 1H, 1D, 1Dutc, 1M ...
    open_time           timestamptz NOT NULL,
    open                numeric     NOT NULL,   -- the exchange's decimal digits, unrounded
    high                numeric     NOT NULL,
    low                 numeric     NOT NULL,
    close               numeric     NOT NULL,
    volume              numeric     NOT NULL,
    quote_volume        numeric     NOT NULL,
    confirmed           boolean     NOT NULL,
    timestamp_exchange  timestamptz NOT NULL,
    timestamp_collector timestamptz NOT NULL,
    -- Natural key: writes are idempotent upserts.
    PRIMARY KEY (exchange, symbol, timeframe, open_time)
) PARTITION BY RANGE (open_time);

-- Queries by exchange/symbol/timeframe and time use the primary key; this BRIN index serves
-- time-range scans across symbols (tiny, and candles arrive in time order).
CREATE INDEX IF NOT EXISTS candles_open_time_brin ON candles USING brin (open_time);

-- Creates the monthly partition holding `at` (UTC months), if it does not exist yet.
-- Safe to call concurrently: a racing creator's duplicate_table error is swallowed.
CREATE OR REPLACE FUNCTION ensure_candle_partition(at timestamptz) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    month_start timestamptz := date_trunc('month', at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC';
    month_end   timestamptz := (date_trunc('month', at AT TIME ZONE 'UTC') + interval '1 month') AT TIME ZONE 'UTC';
    part_name   text        := format('candles_%s', to_char(at AT TIME ZONE 'UTC', 'YYYY_MM'));
BEGIN
    IF to_regclass(part_name) IS NULL THEN
        BEGIN
            EXECUTE format('CREATE TABLE IF NOT EXISTS %I PARTITION OF candles FOR VALUES FROM (%L) TO (%L)',
                           part_name, month_start, month_end);
        EXCEPTION WHEN duplicate_table OR unique_violation THEN
            NULL;  -- another session created it first
        END;
    END IF;
    RETURN part_name;
END;
$$;

-- Creates partitions from `months_back` months before now to `months_ahead` after (run at start-up
-- and daily by the process holding the maintenance lock).
CREATE OR REPLACE FUNCTION ensure_candle_partitions_ahead(months_back integer, months_ahead integer)
RETURNS SETOF text LANGUAGE plpgsql AS $$
DECLARE
    i integer;
BEGIN
    FOR i IN -months_back..months_ahead LOOP
        RETURN NEXT ensure_candle_partition(now() + make_interval(months => i));
    END LOOP;
END;
$$;
