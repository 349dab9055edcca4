"""One typed settings object, read from ``ERPX_*`` environment variables.

Built once by the entry point (CLI, API) and passed down; importing this module has no side
effects (no folders created, no MLflow URIs set).
"""

from __future__ import annotations

from datetime import datetime
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
    frozen_now: datetime | None = Field(
        default=None,
        description=(
            "The API's clock, fixed (ISO time with zone). For a demo or test over a simulated "
            "world whose history ends in the past; unset, the API uses the real time."
        ),
    )
    feature_refresh_seconds: float = Field(
        default=5.0,
        gt=0,
        description="How often the API takes newly written history into its feature index.",
    )
    max_order_lines: int = Field(
        default=500, ge=1, le=10_000, description="The most lines one API order may carry."
    )
    api_key_cache_seconds: float = Field(
        default=5.0,
        ge=0,
        description="How long a checked API key is trusted before it is looked up again "
        "(a revoked key stops working within this time).",
    )

    @field_validator("database_url")
    @classmethod
    def _database_url_is_supported(cls, value: str) -> str:
        if not value.startswith(("sqlite", "postgresql")):
            raise ValueError(
                f"ERPX_DATABASE_URL={value!r}: only sqlite:/// and postgresql:// URLs are supported"
            )
        return value

    @field_validator("frozen_now")
    @classmethod
    def _frozen_now_is_aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError(
                f"ERPX_FROZEN_NOW={value.isoformat()!r}: give a time zone (e.g. +00:00)"
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
