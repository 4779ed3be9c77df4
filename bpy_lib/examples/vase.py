from bpy_lib import *

# object: twisted vase
# part_1: body loft
bottom = polygon(sides=8, radius=0.3, center=[0, 0, -0.9])
belly = polygon(sides=8, radius=0.6, center=[0, 0, -0.2])
neck = polygon(sides=8, radius=0.25, center=[0, 0, 0.6])
lip = polygon(sides=8, radius=0.35, center=[0, 0, 0.9])
body = loft([bottom, belly, neck, lip], name="body")
subdivide(body, levels=2, smooth=False)
twist(body, angle=45)
export_scene()
