"""The entry schema as a pydantic model: what `schema.check_entry` validates each entry against."""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, InstanceOf, StrictBool, StrictInt, StrictStr, field_validator

from modelreg.fields import LoadingState, backend_key
from modelreg.values import env_mapping_problems, env_name


class BackendConfig(BaseModel):
    model_config = ConfigDict(extra="allow")

    port: StrictInt | None = Field(None, ge=1, le=65535)
    extra_args: list[StrictStr] | None = None
    host: StrictStr | None = None
    base_url: StrictStr | None = None
    model_path: StrictStr | None = None
    ready_timeout: float | None = Field(None, gt=0)
    exclusive_group: StrictStr | None = None
    loading_state: LoadingState | None = None  # else the setting
    idle_ttl: float | None = Field(None, ge=0)
    api_key_env: StrictStr | None = None  # the variable's name, never a key
    max_concurrency: StrictInt | None = Field(None, ge=1)
    executable: StrictStr | None = Field(None, min_length=1)  # this model's program instead of the settings' one
    env: InstanceOf[dict] | None = None  # variable name -> text, `$NAME` references read at launch

    @field_validator("env")
    @classmethod
    def _env_mapping(cls, value: dict | None) -> dict | None:
        if value is not None and (problems := env_mapping_problems(value)):
            raise ValueError("; ".join(problems))
        return value

    @field_validator("api_key_env")
    @classmethod
    def _env_name(cls, value: str | None) -> str | None:
        return env_name(value)


class Entry(BaseModel):
    """One model entry; unknown keys are allowed and kept verbatim (the raw dict is what is stored, so the check
    leaves them out, and checks only that free-form objects are objects)."""

    model_config = ConfigDict(extra="ignore")

    name: StrictStr = Field(min_length=1)
    profile: StrictStr | None = Field(None, min_length=1)
    display_name: StrictStr | None = None
    backend: StrictStr | None = None
    backend_config: BackendConfig | None = None
    capabilities: InstanceOf[dict] | None = None
    generation_defaults: InstanceOf[dict] | None = None
    roles: list[StrictStr] | None = None
    role_priority: InstanceOf[dict] | None = None
    model_aliases: list[StrictStr] | None = None
    served_model_id: StrictStr | None = None
    deprecated: StrictBool | None = None
    chat_template: dict[str, Any] | StrictStr | None = None
    metadata: InstanceOf[dict] | None = None

    @field_validator("backend")
    @classmethod
    def _known_backend(cls, value: str | None) -> str | None:
        if value is not None and backend_key(value) is None:
            raise ValueError(f"unknown backend {value!r}")
        return value
