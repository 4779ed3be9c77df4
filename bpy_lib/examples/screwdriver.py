from bpy_lib import *

# object: screwdriver
# part_1: handle
handle = prism(sides=6, radius=0.12, depth=0.7, location=[0, 0, 0.55], name="handle")
bevel(handle, width=0.02)
# part_2: ferrule
ferrule = cone(
    radius1=0.06, radius2=0.1, depth=0.1, location=[0, 0, 0.15], segments=24, name="ferrule"
)
# part_3: shaft
shaft = cylinder(radius=0.025, depth=1.0, location=[0, 0, -0.4], segments=16, name="shaft")
# part_4: tip
tip = box(size=[0.06, 0.012, 0.1], location=[0, 0, -0.95], name="tip")
taper(tip, factor=1.6, axis="Z")
export_scene()
