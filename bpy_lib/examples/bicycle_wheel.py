from bpy_lib import *

# object: bicycle wheel
# part_1: tyre
tyre = torus(major_radius=0.9, minor_radius=0.06, rotation=[90, 0, 0], segments=64, name="tyre")
# part_2: rim
rim = torus(
    major_radius=0.84,
    minor_radius=0.025,
    rotation=[90, 0, 0],
    segments=64,
    minor_segments=8,
    name="rim",
)
# part_3: hub
hub = cylinder(radius=0.06, depth=0.16, rotation=[90, 0, 0], segments=24, name="hub")
# part_4: spokes
spoke = cylinder(radius=0.006, depth=0.78, location=[0, 0, 0.45], segments=6, name="spokes")
radial_array(spoke, count=24, axis="Y")
export_scene()
