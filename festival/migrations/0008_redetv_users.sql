-- The freshest personal data REDETV!PLUS has sent for each user, merged field by field in the
-- order of `occurred_at`. A `user.updated` that arrives before the user's first subscription
-- event is kept here and copied to `customers` when that event arrives. Personal data: this table,
-- like `customers`, is never published.
CREATE TABLE redetv_users (
    user_id text PRIMARY KEY,
    name text,
    email text,
    cpf text,
    phone text,
    occurred_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
