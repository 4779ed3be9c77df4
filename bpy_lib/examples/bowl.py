from bpy_lib import *

# object: salad bowl
# part_1: bowl shell
curve = arc(radius=0.9, start_angle=-90, end_angle=-10, center=[0, 0, 0.4], plane="XZ", segments=24)
shell = revolve(curve, segments=64, name="bowl")
solidify(shell, thickness=0.05)
# part_2: foot ring
foot = cylinder(radius=0.3, depth=0.06, location=[0, 0, -0.52], segments=48, name="foot")
export_scene()
