"""``zerotouch demo``: the whole zero-touch flow on 127.0.0.1, driven through the CLIs.

``services`` starts and stops the ``zerotouch`` processes; ``nms`` is the owner's NETCONF
client; ``flow`` is the ordered set of steps the command runs and reports.
"""
