package receiver

import (
	"testing"
)

// harborBenchPush is a PUSH_ARTIFACT of a multi-arch index, as Harbor 2.13 sends it.
const harborBenchPush = `{"type":"PUSH_ARTIFACT","occur_at":1750000000,"operator":"robot$wso2-apim+ci","event_data":{"resources":[{"digest":"` + digIndex +
	`","tag":"4.2.0.15","resource_url":"harbor.acme.example:8443/wso2-apim/base/am:4.2.0.15"}],` + repoAM + `}}`

func BenchmarkParseHarborDefault(b *testing.B) {
	body := []byte(harborBenchPush)
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if _, err := ParseHarborDefault(harborTestOrigin, body); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseHarborCloudEvent(b *testing.B) {
	body := harborCloudEventTwin(b, []byte(harborBenchPush), "f1e2d3c4-b5a6-4978-8a9b-0c1d2e3f4a5b")
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if _, err := ParseHarborCloudEvent(harborTestOrigin, body); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseDistribution(b *testing.B) {
	body := distEnvelopeBody(b, distTestEv("7c2b3f4e-5a6d-4e8f-9a0b-1c2d3e4f5a6b", "push",
		distTestTarget{MediaType: distMTIndex, Digest: digIndex, Size: 856, Length: 856, Repository: "acme/base/am", URL: distManifestURL("acme/base/am", digIndex), Tag: "4.2.0.15"},
		"PUT", distDockerUA, "ci"))
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if r := ParseDistribution(distTestOrigin, body, distTestUserAgentPrefix); len(r.Events) != 1 {
			b.Fatalf("%+v", r)
		}
	}
}
