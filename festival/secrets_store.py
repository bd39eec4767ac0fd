"""Credentials that `festival up` generates once and keeps in the data folder for later runs.

The file is JSON, readable by its owner only (mode 0600). A value configured through a
`FESTIVAL_*` variable always wins over a stored one, and is never written to the file.
"""

import base64
import json
import logging
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from festival.launcher_checks import LaunchError

logger = logging.getLogger(__name__)

SECRETS_FILE = "secrets.json"


def new_webhook_secret() -> str:
    """Return a Standard Webhooks secret: `whsec_` and the base64 of 24 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode("ascii")


def new_token() -> str:
    return secrets.token_urlsafe(24)


# Each stored name and the function that generates its value.
GENERATORS = {
    "nix_webhook_secret": new_webhook_secret,
    "redetv_webhook_secret": new_webhook_secret,
    "operator_token": new_token,
    "mqtt_service_password": new_token,
    "mqtt_screen_password": new_token,
    "fake_redetv_api_token": new_token,
}


@dataclass
class SecretsStore:
    """Generated credentials, loaded from and saved to `path`."""

    path: Path
    values: dict[str, str] = field(default_factory=dict)
    generated_now: set[str] = field(default_factory=set)

    @classmethod
    def open(cls, data_dir: Path) -> "SecretsStore":
        """Load the stored credentials of `data_dir`, or start with none."""
        path = data_dir / SECRETS_FILE
        store = cls(path)
        if path.exists():
            try:
                loaded = json.loads(path.read_text("utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError) as error:
                raise LaunchError(f"{path} is not valid JSON ({error}); remove it to generate new credentials") from error
            if not isinstance(loaded, dict):
                raise LaunchError(f"{path} must contain a JSON object; remove it to generate new credentials")
            store.values = {str(key): str(value) for key, value in loaded.items()}
        return store

    def get_or_create(self, name: str) -> str:
        """Return the stored value of `name`, generating and saving one when there is none."""
        if name not in self.values:
            self.values[name] = GENERATORS[name]()
            self.generated_now.add(name)
            self.save()
            logger.info("credential generated name=%s file=%s", name, self.path)
        return self.values[name]

    def save(self) -> None:
        """Write the file with mode 0600, replacing the old one only once the new one is complete."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_suffix(".tmp")
        descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            json.dump(self.values, file, indent=2, sort_keys=True)
        os.chmod(partial, 0o600)
        os.replace(partial, self.path)
