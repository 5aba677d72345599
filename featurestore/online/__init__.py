"""The online store: the latest row per (view, entity key), served with statuses.

``base`` the interface and ``open_online_store``; ``codec`` the one value encoding;
``redis`` and ``sqlite`` the two stores; ``read`` compiled read plans and the read path
behind ``FeatureStore.get_online_features``; ``response`` its answer and statuses.
Nothing heavy is imported here.
"""
