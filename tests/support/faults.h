// The fixture of the service fault tests (tests/faults_service*_test.cc): a directory of their
// own, with the test process a subreaper.
#pragma once

#include "support/harness.h"

namespace sr::test {

class Faults : public TreeTest {};

}  // namespace sr::test
