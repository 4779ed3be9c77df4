from bpy_lib import *

# object: coat rack
# part_1: pole
pole = cylinder(radius=0.035, depth=1.8, segments=16, name="pole")
# part_2: base
base = cone(radius1=0.35, radius2=0.08, depth=0.12, location=[0, 0, -0.9], segments=48, name="base")
# part_3: hooks
hook_path = bezier(points=[[0.03, 0, 0.7], [0.2, 0, 0.75], [0.25, 0, 0.9]])
hook = sweep(hook_path, radius=0.015, segments=8, name="hooks")
radial_array(hook, count=6)
# part_4: finial
finial = sphere(radius=0.06, location=[0, 0, 0.92], segments=16, rings=8, name="finial")
export_scene()
