from bpy_lib import *

# object: coffee mug
# part_1: body
wall = polyline(points=[[0, -0.5], [0.42, -0.5], [0.45, 0.5]], plane="XZ")
body = revolve(wall, segments=48, name="body")
solidify(body, thickness=0.05)
# part_2: handle
path = arc(radius=0.28, start_angle=-80, end_angle=80, center=[0.45, 0, 0], plane="XZ", segments=20)
grip = rounded_rectangle(width=0.1, height=0.06, radius=0.025)
handle = sweep(path, profile=grip, name="handle")
export_scene()
