-- 01: extensions. The schema needs only PL/pgSQL (for the partition functions), which every
-- PostgreSQL ships; listed here so the dependency is explicit.
CREATE EXTENSION IF NOT EXISTS plpgsql;
