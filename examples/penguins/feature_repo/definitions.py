"""Feast definitions of the penguins example: one entity, one feature view, one service.

The source is the example's prepared data (``../data/penguins.parquet``, written by
``prepare_data.py``). Feast resolves the relative path against the repo directory
(``RepoConfig.repo_path``), not the working directory.
"""

from datetime import timedelta

from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
from feast.types import Float64, String

penguin = Entity(
    name="penguin",
    join_keys=["penguin_id"],
    value_type=ValueType.INT64,
    description="One penguin observed in the Palmer Archipelago (penguin_id = row number).",
)

penguins_source = FileSource(
    name="penguins_source",
    path="../data/penguins.parquet",
    timestamp_field="event_timestamp",
)

penguin_measurements = FeatureView(
    name="penguin_measurements",
    entities=[penguin],
    # 0 = no TTL: a measurement stays valid for any later entity row.
    ttl=timedelta(0),
    schema=[
        Field(name="bill_length_mm", dtype=Float64),
        Field(name="bill_depth_mm", dtype=Float64),
        Field(name="flipper_length_mm", dtype=Float64),
        Field(name="body_mass_g", dtype=Float64),
        Field(name="island", dtype=String),
        Field(name="sex", dtype=String),
    ],
    source=penguins_source,
    online=True,
    description="Body measurements, island and sex of each penguin.",
)

penguin_features = FeatureService(
    name="penguin_features",
    features=[penguin_measurements],
    description="The features the species classifier trains on.",
)
