"""One typed settings object, read from ``ERPX_*`` environment variables.

Built once by the entry point (CLI, API) and passed down; importing this module has no side
effects (no folders created, no MLflow URIs set).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Where erpx keeps its state and how it is reached."""

    model_config = SettingsConfigDict(env_prefix="ERPX_", extra="ignore")

    database_url: str = Field(
        default="sqlite:///var/erpx.db",
        description="SQLAlchemy URL of the ERP database (SQLite file or PostgreSQL).",
    )
    mlflow_tracking_uri: str = Field(default="sqlite:///var/mlflow.db")
    mlflow_artifact_root: str = Field(default="var/mlartifacts")
    api_host: str = Field(default="127.0.0.1")
    api_port: int = Field(default=8000, ge=1, le=65535)
    policy_path: Path | None = Field(
        default=None,
        description="Governance policy TOML; None means the default shipped in erp_core.",
    )
    var_dir: Path = Field(default=Path("var"))

    @field_validator("database_url")
    @classmethod
    def _database_url_is_supported(cls, value: str) -> str:
        if not value.startswith(("sqlite", "postgresql")):
            raise ValueError(
                f"ERPX_DATABASE_URL={value!r}: only sqlite:/// and postgresql:// URLs are supported"
            )
        return value

    @field_validator("policy_path")
    @classmethod
    def _policy_file_exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"ERPX_POLICY_PATH={str(value)!r}: no such file")
        return value


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, built on first use from the environment."""
    return Settings()
