"""Neural fields on posed views: data (``views``, ``scenes``, ``formats``), rays, NeRF and rendering."""
