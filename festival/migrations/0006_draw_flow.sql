-- Draw flow: the trigger guard, the Loteria Federal date, and the live steps of each draw.

ALTER TABLE draws
    -- Set once by the first trigger (scheduler or operator); a second trigger finds it set and does nothing.
    ADD COLUMN triggered_at      timestamptz,
    ADD COLUMN loteria_drawn_on  date;

-- Steps of a draw's live show, computed and stored with the winners in one transaction, then released
-- one by one at the draw's pace into the outbox. A crash mid-show resumes at the first unreleased step.
CREATE TABLE draw_live_steps (
    draw_id     uuid        NOT NULL REFERENCES draws (id),
    sequence    integer     NOT NULL CHECK (sequence >= 1),
    kind        text        NOT NULL CHECK (kind IN ('started', 'number_drawn', 'winner', 'finished', 'cancelled')),
    -- The public LiveStep without its `at`, which is set on release. Holds no personal data.
    payload     jsonb       NOT NULL,
    released_at timestamptz,
    PRIMARY KEY (draw_id, sequence)
);
CREATE INDEX draw_live_steps_unreleased ON draw_live_steps (draw_id, sequence) WHERE released_at IS NULL;
