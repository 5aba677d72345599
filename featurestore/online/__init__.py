"""The online store: the latest row per (view, entity key), served with statuses.

``base`` the interface and ``open_online_store``; ``codec`` the one value encoding;
``redis``, ``redis_cluster`` and ``sqlite`` the stores (``redis_base`` what both Redis
stores share, ``redis_scripts`` their Lua, ``cluster_client`` the cluster's per-node
pipelines); ``read`` compiled read plans and the read path behind
``FeatureStore.get_online_features``; ``response`` its answer and statuses.
Nothing heavy is imported here.
"""
