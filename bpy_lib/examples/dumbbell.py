from bpy_lib import *

# object: dumbbell
# part_1: grip bar
bar = cylinder(radius=0.05, depth=1.2, rotation=[0, 90, 0], segments=24, name="bar")
# part_2: weight plates
plate = cylinder(
    radius=0.3, depth=0.08, location=[0.45, 0, 0], rotation=[0, 90, 0], segments=48, name="plates"
)
bevel(plate, width=0.015)
linear_array(plate, count=3, offset=[0.09, 0, 0])
mirror(plate, axis="X", name="plates_left")
# part_3: collars
collar = cylinder(
    radius=0.08, depth=0.05, location=[0.38, 0, 0], rotation=[0, 90, 0], segments=24, name="collars"
)
mirror(collar, axis="X", name="collar_left")
export_scene()
