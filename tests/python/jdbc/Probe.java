// A JDBC client for the end-to-end tests: connects with the PostgreSQL JDBC driver (SCRAM-SHA-256
// against Polder), runs one query with optional string parameters through a PreparedStatement and
// prints each row as tab-separated values. Run as a single source file: java -cp postgresql.jar
// Probe.java URL USER PASSWORD SQL [PARAM...]. Exit code 2 and the driver's message on failure.
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.util.Properties;

public class Probe {
    public static void main(String[] args) {
        Properties properties = new Properties();
        properties.setProperty("user", args[1]);
        properties.setProperty("password", args[2]);
        try (Connection connection = DriverManager.getConnection(args[0], properties);
             PreparedStatement statement = connection.prepareStatement(args[3])) {
            for (int i = 4; i < args.length; i++) {
                statement.setString(i - 3, args[i]);
            }
            try (ResultSet rows = statement.executeQuery()) {
                int columns = rows.getMetaData().getColumnCount();
                while (rows.next()) {
                    StringBuilder line = new StringBuilder();
                    for (int c = 1; c <= columns; c++) {
                        if (c > 1) line.append('\t');
                        line.append(rows.getString(c));
                    }
                    System.out.println(line);
                }
            }
        } catch (SQLException e) {
            System.err.println("SQLSTATE " + e.getSQLState() + ": " + e.getMessage());
            System.exit(2);
        }
    }
}
