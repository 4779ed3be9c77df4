from bpy_lib import *

# object: flower pot with saucer
# part_1: pot
pot = cone(radius1=0.4, radius2=0.55, depth=0.9, location=[0, 0, 0.05], segments=48, name="pot")
cavity = cone(radius1=0.35, radius2=0.5, depth=0.9, location=[0, 0, 0.12], segments=48)
difference(pot, cavity)
# part_2: rim
rim = torus(major_radius=0.54, minor_radius=0.04, location=[0, 0, 0.48], name="rim")
# part_3: saucer
saucer = cylinder(radius=0.6, depth=0.06, location=[0, 0, -0.43], segments=48, name="saucer")
bevel(saucer, width=0.02)
export_scene()
