from bpy_lib import *

# object: twisted candle holder
# part_1: column
column = prism(sides=5, radius=0.2, depth=1.2, location=[0, 0, -0.2], name="column")
subdivide(column, levels=3, smooth=False)
twist(column, angle=120)
# part_2: base plate
base = cylinder(radius=0.45, depth=0.08, location=[0, 0, -0.84], segments=48, name="base")
bevel(base, width=0.02)
# part_3: cup
cup = cylinder(radius=0.22, depth=0.2, location=[0, 0, 0.5], segments=32, name="cup")
well = cylinder(radius=0.17, depth=0.3, location=[0, 0, 0.62], segments=32)
difference(cup, well)
# part_4: candle
candle = cylinder(radius=0.15, depth=0.5, location=[0, 0, 0.75], segments=32, name="candle")
export_scene()
