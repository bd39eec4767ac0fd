-- Verifiable draws: prizes, the seed and its commitment, the frozen snapshot, the mode and the winners.
-- docs/draws.md defines every value stored here (commitment, snapshot bytes and hash, winner rules).

ALTER TABLE draws
    -- Ordered prize descriptions: element 0 is the 1st prize, drawn first.
    ADD COLUMN prizes          jsonb       NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(prizes) = 'array'),
    ADD COLUMN mode            text        NOT NULL DEFAULT 'random' CHECK (mode IN ('random', 'loteria_federal')),
    -- 32 random bytes as hex. Secret until the draw completes: the public API shows only the commitment before then.
    ADD COLUMN seed            text        CHECK (seed ~ '^[0-9a-f]{64}$'),
    -- SHA-256 of the seed's raw bytes, published when the draw is created.
    ADD COLUMN commitment      text        CHECK (commitment ~ '^[0-9a-f]{64}$'),
    -- Loteria Federal mode: the 1st to 5th prizes of the extraction, as 5-digit strings, and its contest.
    ADD COLUMN loteria_results text[]      CHECK (array_to_string(loteria_results, ',') ~ '^[0-9]{5}(,[0-9]{5}){4}$'),
    ADD COLUMN loteria_contest text,
    ADD COLUMN snapshot_sha256 text        CHECK (snapshot_sha256 ~ '^[0-9a-f]{64}$'),
    ADD COLUMN snapshot_count  bigint      CHECK (snapshot_count >= 0),
    ADD COLUMN frozen_at       timestamptz,
    ADD COLUMN started_at      timestamptz,
    ADD COLUMN completed_at    timestamptz,
    -- Pause between two steps of the live draw, so that screens can show each number.
    ADD COLUMN pace_ms         integer     NOT NULL DEFAULT 3000 CHECK (pace_ms BETWEEN 0 AND 600000),
    ADD CONSTRAINT draws_seed_committed CHECK (seed IS NULL OR commitment IS NOT NULL),
    ADD CONSTRAINT draws_snapshot_complete CHECK ((snapshot_sha256 IS NULL) = (snapshot_count IS NULL)),
    ADD CONSTRAINT draws_loteria_results CHECK (
        mode = 'random' OR status <> 'completed' OR loteria_results IS NOT NULL
    );

-- The frozen entries of a draw: the canonical snapshot bytes whose SHA-256 is draws.snapshot_sha256
-- (each number as 8 bytes, big-endian, ascending). Who holds a number stays in lucky_numbers.
CREATE TABLE draw_snapshots (
    draw_id    uuid        PRIMARY KEY REFERENCES draws (id),
    numbers    bytea       NOT NULL CHECK (octet_length(numbers) % 8 = 0),
    created_at timestamptz NOT NULL DEFAULT now()
);
-- The bytes are close to random, so compressing them wastes time; store them out of line as they are.
ALTER TABLE draw_snapshots ALTER COLUMN numbers SET STORAGE EXTERNAL;

-- One row per prize that has a winner. Name and CPF are stored masked, as they are published.
CREATE TABLE draw_winners (
    draw_id          uuid        NOT NULL REFERENCES draws (id),
    position         integer     NOT NULL CHECK (position >= 1),
    number           bigint      NOT NULL,
    subscription_ref text        NOT NULL,
    display_name     text        NOT NULL,
    masked_cpf       text        NOT NULL,
    drawn_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (draw_id, position),
    UNIQUE (draw_id, number),
    FOREIGN KEY (draw_id, number) REFERENCES lucky_numbers (draw_id, number)
);
