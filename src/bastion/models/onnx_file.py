"""Shared parts of the analyzers that run a user-supplied ONNX file named in the config."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, TypeVar

from pydantic import Field, field_validator

from bastion.analyzers.base import AnalyzerConfig, FrameAnalyzer, file_version
from bastion.errors import AnalyzerUnavailable
from bastion.policy import taxonomy


class ModelFileConfig(AnalyzerConfig):
    """A model file, its reported name and a class → taxonomy label map."""

    model_path: Path | None = Field(None, description="The model's ONNX file; required.")
    model_name: str | None = Field(
        None, description="Model name reported in results; defaults to the file's stem."
    )
    class_map: dict[str, str] = Field(
        default_factory=dict,
        description="Class name -> taxonomy label emitted when that class is found.",
    )

    @field_validator("class_map")
    @classmethod
    def _known_labels(cls, value: dict[str, str]) -> dict[str, str]:
        for label in value.values():
            if label not in taxonomy.CATEGORIES:
                raise ValueError(f"unknown taxonomy label {label!r}")
        return value


CF = TypeVar("CF", bound=ModelFileConfig)
P = TypeVar("P")


class ModelFileAnalyzer(FrameAnalyzer[CF, P]):
    """An analyzer of image frames with name, version (sha of the file) and categories
    (the mapped labels) from the config."""

    default_model_name: ClassVar[str] = "onnx-model"
    _version: str | None = None

    @property
    def model_name(self) -> str:
        if self.config.model_name:
            return self.config.model_name
        path = self.config.model_path
        return path.stem if path else self.default_model_name

    @property
    def version(self) -> str:
        if self._version is None:
            path = self.config.model_path
            if path is None or not path.is_file():
                return "unavailable"
            self._version = file_version(path)
        return self._version

    def model_file(self) -> Path:
        """The configured model file, pinning the version to it; unavailable if missing."""
        path = self.config.model_path
        if path is None:
            raise AnalyzerUnavailable(f"{self.name}: model_path is not set")
        if not path.is_file():
            raise AnalyzerUnavailable(f"{self.name}: model file {path} not found")
        self._version = file_version(path)
        return path

    def categories(self) -> list[str]:
        return list(dict.fromkeys(self.config.class_map.values()))
