"""X-ray scanner drop folder (``driver = "xray.folder"``): image + sidecar in, scans out.

Modules: :mod:`.config` (keys), :mod:`.watch` (inotify or polling), :mod:`.folder`
(grouping and settle rules), :mod:`.structure` (is an image file whole?),
:mod:`.imagefile` (hash and preview), :mod:`.sidecar` (XML/JSON metadata),
:mod:`.manifest` (append-only record),
:mod:`.scan` (readings), :mod:`.driver`, :mod:`.originals` (serving an original) and
:mod:`.check` (``gatewayctl xray check``).
"""
