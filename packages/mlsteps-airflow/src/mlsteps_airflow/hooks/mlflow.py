"""The ``mlflow`` connection type: an Airflow Connection turned into :class:`MlflowSettings`.

The hook only translates. It does not import MLflow or talk to the server: the
steps do that through the core, with the settings this hook returns. The token
(the connection's password) is wrapped in a ``SecretStr`` as soon as it is read,
so it is masked wherever the settings are printed and never reaches XCom or
lineage records.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook
from pydantic import SecretStr

from mlsteps.context import MlflowSettings

if TYPE_CHECKING:
    from airflow.sdk import Connection


def settings_from_connection(conn: Connection) -> MlflowSettings:
    """Map an ``mlflow`` connection's fields onto :class:`MlflowSettings`.

    Args:
        conn: The connection. ``host`` is the tracking URI (``http://mlflow:5000``,
            ``databricks``, ``sqlite:////data/mlflow.db``) and is used as is when it
            has a scheme; a bare host name gets
            ``http://`` (or ``https://`` with extra ``{"https": true}``) and the
            connection's port. ``password`` is the bearer token. Extras
            ``registry_uri`` and ``experiment`` are optional.

    Returns:
        The settings, with the token as a ``SecretStr`` (``None`` when empty).
    """
    extra: dict[str, Any] = conn.extra_dejson or {}
    host = (conn.host or "").strip()
    tracking_uri: str | None
    if not host:
        tracking_uri = None
    elif "://" in host or host.startswith("databricks"):
        tracking_uri = host  # a full URI, or a Databricks profile URI such as "databricks://prod"
    else:
        scheme = "https" if extra.get("https") else "http"
        port = f":{conn.port}" if conn.port else ""
        tracking_uri = f"{scheme}://{host}{port}"
    token = conn.password or None
    return MlflowSettings(
        tracking_uri=tracking_uri,
        registry_uri=extra.get("registry_uri") or None,
        experiment=extra.get("experiment") or None,
        token=SecretStr(token) if token else None,
    )


class MlflowHook(BaseHook):
    """Reads an ``mlflow`` connection and returns the settings mlsteps steps use.

    Args:
        mlflow_conn_id: The connection id (default ``mlflow_default``).

    Example:
        ``AIRFLOW_CONN_MLFLOW_DEFAULT='{"conn_type": "mlflow", "host": "https://mlflow.example.com",
        "password": "<token>", "extra": {"experiment": "penguins"}}'``, then
        ``MlflowHook().get_settings().tracking_uri == "https://mlflow.example.com"``.
    """

    conn_name_attr = "mlflow_conn_id"
    default_conn_name = "mlflow_default"
    conn_type = "mlflow"
    hook_name = "MLflow (mlsteps)"

    def __init__(self, mlflow_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.mlflow_conn_id = mlflow_conn_id

    def get_settings(self) -> MlflowSettings:
        """The connection as :class:`MlflowSettings` (token kept secret)."""
        return settings_from_connection(self.get_connection(self.mlflow_conn_id))

    def get_conn(self) -> MlflowSettings:
        """Same as :meth:`get_settings`: the "client" of this hook is the settings object."""
        return self.get_settings()

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Relabel the connection form: host is the tracking URI, password the token."""
        return {
            "hidden_fields": ["schema", "login"],
            "relabeling": {"host": "Tracking URI", "password": "Token"},
            "placeholders": {
                "host": "https://mlflow.example.com (or a bare host name plus port)",
                "password": "Bearer token for a secured MLflow server (optional)",
                "extra": '{"experiment": "penguins", "registry_uri": "...", "https": false}',
            },
        }
