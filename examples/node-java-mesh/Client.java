// The "caller" service: a single-file Java program (java Client.java) calling plain HTTP on a
// loopback port; its egress proxy carries the call over mutual TLS to the "api" service.
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;

public class Client {
    public static void main(String[] args) throws Exception {
        var client = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1).build();
        var request = HttpRequest.newBuilder(URI.create("http://" + System.getenv("API_ADDRESS") + "/orders/42")).build();
        var response = client.send(request, HttpResponse.BodyHandlers.ofString());
        System.out.println(response.statusCode() + " " + response.body().trim());
    }
}
