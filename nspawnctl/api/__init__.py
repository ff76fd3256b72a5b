"""A Docker Engine API front-end over the library (issue 15): a second way in, never a second
implementation. ``server`` accepts connections, ``http`` speaks HTTP/1.1 through h11, ``routing``
maps paths to ``handlers``, ``render`` gives the library's records docker's shape."""
