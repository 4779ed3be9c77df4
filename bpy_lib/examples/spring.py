from bpy_lib import *

# object: compression spring on a base
# part_1: coil
coil_path = helix(radius=0.35, pitch=0.2, turns=7.5, center=[0, 0, -0.75], segments=32)
coil = sweep(coil_path, radius=0.04, segments=12, name="coil")
# part_2: end plates
plate = cylinder(radius=0.45, depth=0.06, location=[0, 0, -0.83], segments=48, name="end_plates")
bevel(plate, width=0.015)
linear_array(plate, count=2, offset=[0, 0, 1.66])
# part_3: guide rod
rod = cylinder(radius=0.08, depth=1.6, segments=24, name="guide_rod")
export_scene()
