#include "addon.h"
namespace ddfs {
void InitStore(Napi::Env env, Napi::Object exports) {}
}  // namespace ddfs
