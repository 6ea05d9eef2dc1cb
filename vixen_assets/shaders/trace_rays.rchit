#version 460
// trace_rays (ray-tracing pipeline): closest hit, for triangles and for boxes confirmed by trace_rays.rint.
#extension GL_EXT_ray_tracing : require

struct Hit { float t; int instance; int primitive; int geometry; };
layout(location = 0) rayPayloadInEXT Hit payload;

void main() {
    payload.t = gl_HitTEXT;
    payload.instance = gl_InstanceCustomIndexEXT;
    payload.primitive = gl_PrimitiveID;
    payload.geometry = gl_GeometryIndexEXT;
}
