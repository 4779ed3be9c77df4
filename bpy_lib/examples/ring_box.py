from bpy_lib import *

# object: hexagonal jewellery box
# part_1: box body
body = prism(sides=6, radius=0.7, depth=0.5, location=[0, 0, -0.2], name="body")
cavity = prism(sides=6, radius=0.62, depth=0.5, location=[0, 0, -0.1])
difference(body, cavity)
# part_2: lid
lid = prism(sides=6, radius=0.74, depth=0.1, location=[0, 0, 0.1], name="lid")
bevel(lid, width=0.02, segments=2)
# part_3: knob
knob = sphere(radius=0.08, location=[0, 0, 0.2], segments=16, rings=8, name="knob")
# part_4: feet
foot = sphere(radius=0.06, location=[0.5, 0, -0.45], segments=12, rings=6, name="feet")
radial_array(foot, count=3)
export_scene()
