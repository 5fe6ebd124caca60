#include "addon.h"
namespace ddfs {
void InitErasure(Napi::Env env, Napi::Object exports) {}
}  // namespace ddfs
