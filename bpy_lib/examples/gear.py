from bpy_lib import *

# object: spur gear
# part_1: gear disc
disc = cylinder(radius=0.7, depth=0.2, segments=64, name="gear")
# part_2: teeth
tooth = box(size=[0.18, 0.1, 0.2], location=[0.76, 0, 0], name="teeth")
taper(tooth, factor=0.6, axis="X")
radial_array(tooth, count=24)
union(disc, tooth)
# part_3: bore with keyway
bore = cylinder(radius=0.15, depth=0.4, segments=32)
key = box(size=[0.1, 0.06, 0.4], location=[0.17, 0, 0])
difference(disc, bore, key)
# part_4: hub
hub = cylinder(radius=0.25, depth=0.3, segments=48, name="hub")
hub_hole = cylinder(radius=0.15, depth=0.5, segments=32)
difference(hub, hub_hole)
export_scene()
