"""Downloads over HTTP(S) and appc discovery; knows nothing of verification or the image store.

``http`` hands out the bytes exactly as served (what checksums and signatures cover), and
``discovery`` turns an appc name into download URLs. ``requests`` is imported only when a
download starts, so commands that never download do not pay for it.
"""
