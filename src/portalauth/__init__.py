"""portalauth: sign clients in to the portals of firms and agencies."""
