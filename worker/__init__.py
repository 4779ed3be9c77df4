"""The reward worker: sandbox policy, fork-server executor, metrics, reward, rendering, tasks.

Modules named ``blender_*`` (and ``render``) import ``bpy`` and run inside Blender; every
other module imports without Blender.
"""
