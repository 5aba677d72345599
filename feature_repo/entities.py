"""The business objects fraud features are keyed by."""

from featurestore import Entity

user = Entity(name="user", join_keys=["user_id"], description="A card holder.")
merchant = Entity(name="merchant", join_keys=["merchant_id"], description="A card acceptor.")
